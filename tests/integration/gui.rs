//! The GUI, driven through its accessibility tree with egui_kittest (no display needed), against
//! a real service in a temp home and the loopback test server. Waiting is on the service's
//! replies (`FerryApp::wait_for_reply`), never on a fixed time.

use crate::home::Home;
use crate::server::{Behaviour, TestServer};
use crate::{PATIENCE, content, sha256};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use ferry::engine::{JobSpec, SystemClock};
use ferry::gui::{Connect, Connection, FerryApp, GuiOptions, Page, PickKind, Pickers};
use ferry::job::{JobId, JobState, JobType, NewFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A file dropped on the window.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// File dialogs answered by the test: always this path.
struct Answer(Option<PathBuf>);

impl Pickers for Answer {
    fn pick(
        &mut self,
        _: PickKind,
        _: &Path,
        reply: Box<dyn FnOnce(Option<PathBuf>) + Send>,
    ) -> bool {
        match &self.0 {
            Some(path) => {
                reply(Some(path.clone()));
                true
            }
            // A desktop with no portal and no zenity: the window shows its own dialog.
            None => false,
        }
    }
}

/// A service in a temp home, a loopback server, and a runtime for both.
struct Setup {
    runtime: tokio::runtime::Runtime,
    server: TestServer,
    home: Home,
    out: tempfile::TempDir,
}

impl Setup {
    fn new(config: &str) -> Setup {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime.block_on(TestServer::start());
        let home = Home::with_config(config);
        runtime.block_on(home.ok(&["daemon"]));
        Setup {
            runtime,
            server,
            home,
            out: tempfile::tempdir().expect("out"),
        }
    }

    fn window(&self) -> Harness<'static, FerryApp> {
        window(
            Connect::Socket(self.home.socket()),
            Some(self.out.path().to_path_buf()),
        )
    }

    fn window_with(&self, look: Look) -> Harness<'static, FerryApp> {
        window_with(
            Connect::Socket(self.home.socket()),
            Some(self.out.path().to_path_buf()),
            look,
        )
    }

    /// `count` SUSPENDED jobs named `prefix-N`, each of one file `/prefix-N.bin`.
    fn jobs(&self, prefix: &str, count: usize) -> Vec<JobId> {
        (0..count)
            .map(|i| {
                let path = format!("/{prefix}-{i}.bin");
                self.job(&format!("{prefix}-{i}"), &[path.as_str()])
            })
            .collect()
    }

    /// A SUSPENDED download job of `paths` (served by the test server) into the out folder.
    fn job(&self, name: &str, paths: &[&str]) -> JobId {
        let mut spec = JobSpec::new(name, JobType::Download);
        spec.files = paths
            .iter()
            .map(|p| NewFile {
                remote_url: self.server.url(p),
                local_path: self.out.path().join(p.trim_start_matches('/')),
                ranges: None,
                checksum: None,
            })
            .collect();
        self.runtime
            .block_on(self.home.client().create(&spec))
            .expect("create")
    }

    fn state(&self, id: JobId) -> JobState {
        self.runtime
            .block_on(self.home.client().job(id))
            .expect("job")
            .state
    }
}

fn window(connect: Connect, answer: Option<PathBuf>) -> Harness<'static, FerryApp> {
    window_with(connect, answer, Look::default())
}

/// How a test's window is made: its size, where its gui.ron is, and its clock.
struct Look {
    size: [f32; 2],
    settings_path: Option<PathBuf>,
    clock: Arc<dyn ferry::engine::Clock>,
}

impl Default for Look {
    fn default() -> Look {
        Look {
            size: [1400.0, 800.0],
            settings_path: None,
            clock: Arc::new(SystemClock::default()),
        }
    }
}

fn window_with(
    connect: Connect,
    answer: Option<PathBuf>,
    look: Look,
) -> Harness<'static, FerryApp> {
    Harness::builder()
        .with_size(look.size)
        .build_eframe(move |cc| {
            FerryApp::new(
                cc,
                GuiOptions {
                    connect,
                    clock: look.clock,
                    settings_path: look.settings_path,
                    system_integration: false,
                    pickers: Box::new(Answer(answer)),
                    activations: None,
                    wake: Default::default(),
                    urls: Vec::new(),
                },
            )
        })
}

/// Runs frames until `done` holds, waiting for the service's replies in between.
fn wait_until(
    window: &mut Harness<'static, FerryApp>,
    what: &str,
    done: impl Fn(&Harness<'static, FerryApp>) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        window.run_ok();
        if done(window) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        window
            .state_mut()
            .wait_for_reply(Duration::from_millis(200));
    }
}

fn shows(window: &Harness<'static, FerryApp>, text: &str) -> bool {
    window.query_all_by_label_contains(text).next().is_some()
}

fn job_state(window: &Harness<'static, FerryApp>, id: JobId) -> Option<JobState> {
    window.state().job(&id).map(|j| j.state)
}

/// The state cell of the job's row, e.g. "⬇ TRANSFERRING".
fn state_cell(state: JobState) -> String {
    let (icon, _) = ferry::gui::state_look(state, JobType::Download);
    format!("{icon} {}", state.name())
}

/// Clicks the first button labelled `label`: the toolbar's, where a toast has one too.
fn click(window: &mut Harness<'static, FerryApp>, label: &str) {
    button(window, label).click();
    window.run_ok();
}

fn button<'a>(window: &'a Harness<'static, FerryApp>, label: &'a str) -> egui_kittest::Node<'a> {
    window
        .get_all_by_role_and_label(Role::Button, label)
        .next()
        .unwrap_or_else(|| panic!("no button {label:?}"))
}

fn is_disabled(window: &Harness<'static, FerryApp>, label: &str) -> bool {
    button(window, label).accesskit_node().is_disabled()
}

#[test]
fn state_column_follows_a_job_from_suspended_to_acknowledged() {
    let setup = Setup::new("");
    let data = content(300_000, 1);
    setup.server.put("/follow.bin", data.clone());
    setup
        .server
        .behave("/follow.bin", Behaviour::stall_after(100_000));
    let id = setup.job("follow", &["/follow.bin"]);
    let mut window = setup.window();
    wait_until(&mut window, "the job in SUSPENDED", |w| {
        shows(w, &state_cell(JobState::Suspended))
    });
    assert_eq!(window.state().connection(), &Connection::Up);

    window.get_by_label("follow").click();
    window.run_ok();
    assert!(!is_disabled(&window, "Resume"));
    click(&mut window, "Resume");
    wait_until(&mut window, "TRANSFERRING", |w| {
        shows(w, &state_cell(JobState::Transferring))
    });
    click(&mut window, "Suspend");
    wait_until(&mut window, "SUSPENDED again", |w| {
        job_state(w, id) == Some(JobState::Suspended) && shows(w, &state_cell(JobState::Suspended))
    });

    setup.server.behave("/follow.bin", Behaviour::default());
    click(&mut window, "Resume");
    wait_until(&mut window, "TRANSFERRED", |w| {
        shows(w, &state_cell(JobState::Transferred))
    });
    // Every file is transferred: Complete needs no confirmation.
    click(&mut window, "Complete");
    wait_until(&mut window, "ACKNOWLEDGED", |w| {
        shows(w, &state_cell(JobState::Acknowledged))
    });
    assert_eq!(
        std::fs::read(setup.out.path().join("follow.bin")).expect("committed file"),
        data
    );
    assert!(
        is_disabled(&window, "Complete"),
        "a finished job cannot be completed again"
    );
}

#[test]
fn partial_complete_says_what_is_kept_and_what_is_discarded() {
    let setup = Setup::new("");
    setup.server.put("/kept.bin", content(50_000, 2));
    setup.server.put("/lost.bin", content(400_000, 3));
    setup
        .server
        .behave("/lost.bin", Behaviour::stall_after(120_000));
    let id = setup.job("partial", &["/kept.bin", "/lost.bin"]);
    let mut window = setup.window();
    wait_until(&mut window, "the job", |w| shows(w, "partial"));
    window.get_by_label("partial").click();
    window.run_ok();
    click(&mut window, "Resume");
    wait_until(
        &mut window,
        "the first file transferred, the second under way",
        |w| {
            w.state().job(&id).is_some_and(|j| {
                j.files[0].transferred
                    && j.files[1].bytes_transferred > 0
                    && j.state == JobState::Transferring
            })
        },
    );

    click(&mut window, "Complete");
    assert!(shows(&window, "Complete with files missing?"));
    assert!(shows(&window, "Kept (1): kept.bin"));
    assert!(shows(&window, "Discarded (1, "));
    assert!(shows(&window, "lost.bin"));
    // "Go back" leaves the job as it was.
    click(&mut window, "Go back");
    assert!(!shows(&window, "Complete with files missing?"));
    assert_eq!(setup.state(id), JobState::Transferring);

    click(&mut window, "Complete");
    click(&mut window, "Complete anyway");
    wait_until(&mut window, "ACKNOWLEDGED", |w| {
        job_state(w, id) == Some(JobState::Acknowledged)
    });
    assert!(setup.out.path().join("kept.bin").exists());
    assert!(!setup.out.path().join("lost.bin").exists());
    let leftovers: Vec<_> = std::fs::read_dir(setup.out.path())
        .expect("out")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("kept.bin")],
        "no temp file stays"
    );
}

#[test]
fn new_download_dialog_and_paste_create_jobs() {
    let setup = Setup::new("");
    let data = content(70_000, 4);
    setup.server.put("/new.iso", data.clone());
    let mut window = setup.window();
    wait_until(&mut window, "the connection", |w| {
        w.state().connection() == &Connection::Up
    });

    // Ctrl+V outside a text field opens the dialog with the pasted URLs.
    window.event(egui::Event::Paste(setup.server.url("/new.iso")));
    window.run_ok();
    let urls = window.get_by_label("URLs, one per line:");
    assert_eq!(
        urls.value().as_deref(),
        Some(setup.server.url("/new.iso").as_str())
    );
    // Browse… opens the folder dialog; the test's dialog answers with the out folder.
    click(&mut window, "Browse…");
    assert_eq!(
        window.get_by_label("Folder").value().as_deref(),
        Some(setup.out.path().to_str().expect("utf-8 path"))
    );
    // "Complete when transferred" is on for downloads made here: the file simply appears.
    assert!(shows(&window, "Complete when transferred"));
    click(&mut window, "Create download");
    wait_until(&mut window, "the new job completed by itself", |w| {
        w.state().job_count() == 1 && shows(w, &state_cell(JobState::Acknowledged))
    });
    assert!(!shows(&window, "URLs, one per line:"), "the dialog closed");
    wait_until(&mut window, "the downloaded toast", |w| {
        shows(w, "“new.iso” is downloaded")
    });
    assert!(shows(&window, "Saved as "));
    assert!(!is_disabled(&window, "Open folder"));
    assert_eq!(
        std::fs::read(setup.out.path().join("new.iso")).expect("file"),
        data
    );

    // Bad input: the dialog says what to fix and creates nothing.
    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::N);
    window.run_ok();
    click(&mut window, "Create download");
    assert!(shows(&window, "Paste at least one URL"));
    assert_eq!(window.state().job_count(), 1);
}

/// A checksum typed in the New download dialog is checked, and the details say so; one that
/// does not match stops the job in ERROR naming both digests.
#[test]
fn the_new_download_dialog_takes_a_checksum_and_the_details_show_the_result() {
    let setup = Setup::new("");
    let data = content(50_000, 8);
    setup.server.put("/sum.iso", data.clone());
    setup.server.put("/bad.iso", content(50_000, 9));
    let mut window = setup.window();
    wait_until(&mut window, "the connection", |w| {
        w.state().connection() == &Connection::Up
    });
    for (path, checksum) in [("/sum.iso", sha256(&data)), ("/bad.iso", sha256(&data))] {
        window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::N);
        window.run_ok();
        window.run_ok();
        type_into(&mut window, "URLs, one per line:", &setup.server.url(path));
        click(&mut window, "Browse…");
        type_into(&mut window, "Checksum", &format!("sha-256={checksum}"));
        click(&mut window, "Create download");
        wait_until(&mut window, "the dialog to close", |w| {
            !shows(w, "URLs, one per line:")
        });
    }
    wait_until(&mut window, "the checked job completed by itself", |w| {
        shows(w, &state_cell(JobState::Acknowledged)) && shows(w, &state_cell(JobState::Error))
    });
    assert_eq!(
        std::fs::read(setup.out.path().join("sum.iso")).expect("file"),
        data
    );
    assert!(!setup.out.path().join("bad.iso").exists(), "not kept");
    window.get_by_label("sum.iso").click();
    window.run_ok();
    wait_until(&mut window, "the verdict", |w| shows(w, "sha-256 verified"));
    window.get_by_label("bad.iso").click();
    window.run_ok();
    wait_until(&mut window, "the mismatch", |w| {
        shows(w, "BG_E_VALIDATION_FAILED")
    });
    assert!(shows(&window, "sha-256 checked when downloaded"));
    assert!(
        shows(&window, &sha256(&data)),
        "the expected digest is named"
    );

    // A checksums file gives both files of a job their digests.
    let two = content(20_000, 10);
    setup.server.put("/rel/one.iso", data.clone());
    setup.server.put("/rel/two.iso", two.clone());
    setup.server.put(
        "/rel/SHA256SUMS",
        format!("{}  one.iso\n{}  two.iso\n", sha256(&data), sha256(&two)),
    );
    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::N);
    window.run_ok();
    window.run_ok();
    let urls = format!(
        "{}\n{}",
        setup.server.url("/rel/one.iso"),
        setup.server.url("/rel/two.iso")
    );
    type_into(&mut window, "URLs, one per line:", &urls);
    click(&mut window, "Browse…");
    type_into(
        &mut window,
        "Checksums file",
        &setup.server.url("/rel/SHA256SUMS"),
    );
    click(&mut window, "Create download");
    wait_until(&mut window, "both files, verified and in place", |_| {
        setup.out.path().join("two.iso").exists() && setup.out.path().join("one.iso").exists()
    });
    assert_eq!(
        std::fs::read(setup.out.path().join("two.iso")).expect("two"),
        two
    );
}

#[test]
fn quota_toast_opens_the_stale_view() {
    let setup = Setup::new("max_jobs_per_user: 1");
    setup.server.put("/one.bin", content(1000, 5));
    setup.job("the only one", &["/one.bin"]);
    let mut window = setup.window();
    wait_until(&mut window, "the job", |w| shows(w, "the only one"));
    window.event(egui::Event::Paste(setup.server.url("/two.bin")));
    window.run_ok();
    click(&mut window, "Create download");
    wait_until(&mut window, "the quota toast", |w| {
        shows(w, "Quota reached") && shows(w, "BG_E_TOO_MANY_JOBS_PER_USER 0x80200049")
    });
    assert!(shows(&window, "already has 1 jobs (limit 1)"));
    // The dialog stays open with the reason, so nothing typed is lost.
    assert!(shows(&window, "URLs, one per line:"));
    click(&mut window, "Close");
    click(&mut window, "Open Stale view");
    assert_eq!(window.state().page(), Page::Stale);
}

#[test]
fn near_timeout_toast_offers_keep() {
    // The warning window is all but the whole timeout: a job is "near" a second after its
    // last activity.
    let setup = Setup::new("job_inactivity_timeout_secs: 3600, inactivity_warning_secs: 3599");
    setup.server.put("/idle.bin", content(1000, 6));
    let id = setup.job("idle", &["/idle.bin"]);
    let mut window = setup.window();
    wait_until(&mut window, "the near-timeout toast", |w| {
        shows(w, "“idle” expires in 59 min")
    });
    let before = window.state().job(&id).expect("job").times.modified;
    assert!(shows(&window, "Keep counts as activity"));
    click(&mut window, "Keep");
    wait_until(&mut window, "the activity time to move", |w| {
        w.state()
            .job(&id)
            .is_some_and(|j| j.times.modified > before)
    });
    assert_eq!(setup.state(id), JobState::Suspended);
}

#[test]
fn stale_view_bulk_cancel() {
    let setup = Setup::new("");
    for (i, name) in ["a.bin", "b.bin", "fresh.bin"].iter().enumerate() {
        setup
            .server
            .put(&format!("/{name}"), content(20_000, 10 + i as u64));
    }
    let a = setup.job("done a", &["/a.bin"]);
    let b = setup.job("done b", &["/b.bin"]);
    let fresh = setup.job("fresh", &["/fresh.bin"]);
    for id in [a, b] {
        setup
            .runtime
            .block_on(setup.home.client().resume(id))
            .expect("resume");
    }
    let mut window = setup.window();
    wait_until(&mut window, "both TRANSFERRED", |w| {
        job_state(w, a) == Some(JobState::Transferred)
            && job_state(w, b) == Some(JobState::Transferred)
    });
    click(&mut window, "Stale");
    assert!(shows(&window, "done a") && shows(&window, "done b"));
    assert!(
        !shows(&window, "fresh"),
        "a fresh SUSPENDED job is not stale"
    );
    click(&mut window, "Select all");
    click(&mut window, "Cancel");
    assert!(shows(&window, "Cancel 2 jobs?"));
    assert!(shows(
        &window,
        "“done a”: the temporary files of 1 file(s) are deleted"
    ));
    click(&mut window, "Cancel jobs");
    wait_until(&mut window, "both CANCELLED", |w| {
        job_state(w, a) == Some(JobState::Cancelled) && job_state(w, b) == Some(JobState::Cancelled)
    });
    assert_eq!(setup.state(fresh), JobState::Suspended);
    assert_eq!(
        std::fs::read_dir(setup.out.path()).expect("out").count(),
        0,
        "temp files deleted"
    );
}

/// Every job type in every state, selected alone: Complete and Cancel are enabled exactly by the
/// rules of spec §2.3, and a disabled button says why.
#[test]
fn complete_and_cancel_follow_the_rules_for_every_type_and_state() {
    use ferry::job::{Job, JobDefaults};
    let mut window = window(
        Connect::Socket(PathBuf::from("/nonexistent/ferry.sock")),
        None,
    );
    for job_type in [JobType::Download, JobType::Upload, JobType::UploadReply] {
        for state in JobState::ALL {
            let mut job = Job::new(
                JobId::new_random(),
                job_type,
                "subject",
                "tester",
                &JobDefaults::default(),
                chrono::Utc::now(),
            )
            .expect("job");
            job.state = state;
            window.state_mut().load_jobs(vec![job]);
            window.run_ok();
            window.get_by_label("subject").click();
            window.run_ok();
            let final_state = state.is_final();
            let complete =
                !final_state && (job_type == JobType::Download || state == JobState::Transferred);
            assert_eq!(
                !is_disabled(&window, "Complete"),
                complete,
                "Complete of {job_type:?} in {state}"
            );
            assert_eq!(
                !is_disabled(&window, "Cancel"),
                !final_state,
                "Cancel in {state}"
            );
        }
    }
    // The tooltip of a disabled Complete names the rule and the BITS code.
    button(&window, "Complete").hover();
    window.run_ok();
    assert!(shows(&window, "BG_E_INVALID_STATE 0x80200002"));
}

#[test]
fn a_dropped_file_opens_the_upload_dialog() {
    let setup = Setup::new("");
    let served = tempfile::tempdir().expect("served");
    std::fs::create_dir(served.path().join("upload")).expect("upload folder");
    let server = setup
        .runtime
        .block_on(crate::upload::Server::start(served.path(), None));
    let local = setup.out.path().join("report.pdf");
    let data = content(5000, 20);
    std::fs::write(&local, &data).expect("local file");
    let mut window = setup.window();
    wait_until(&mut window, "the connection", |w| {
        w.state().connection() == &Connection::Up
    });
    window
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(local.clone())));
    window.run_ok();
    assert_eq!(
        window.get_by_label("Local file").value().as_deref(),
        local.to_str()
    );
    let url = window.get_by_label("Server URL");
    url.focus();
    url.type_text(&format!("{}/upload/report.pdf", server.base));
    window.run_ok();
    click(&mut window, "Create upload");
    wait_until(&mut window, "the upload job", |w| {
        w.state().job_count() == 1
    });
    let jobs = setup
        .runtime
        .block_on(setup.home.client().jobs(false))
        .expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_type, JobType::Upload);
    assert_eq!(jobs[0].files[0].local_path, local);
    assert_eq!(jobs[0].display_name, "report.pdf");
    // "Start now" is on: the upload runs and the table follows it to TRANSFERRED.
    let id = jobs[0].id;
    wait_until(&mut window, "TRANSFERRED", |w| {
        job_state(w, id) == Some(JobState::Transferred)
    });
    let uploaded = std::fs::read(served.path().join("upload/report.pdf")).expect("uploaded");
    assert_eq!(sha256(&uploaded), sha256(&data));
}

/// An upload-reply job's details show its reply apart from the upload.
#[test]
fn upload_reply_details_show_the_reply() {
    let setup = Setup::new("");
    let local = setup.out.path().join("form.bin");
    std::fs::write(&local, content(100, 21)).expect("local file");
    let mut spec = JobSpec::new("form", JobType::UploadReply);
    spec.files = vec![NewFile {
        remote_url: "http://127.0.0.1:9/form.bin".into(),
        local_path: local.clone(),
        ranges: None,
        checksum: None,
    }];
    spec.reply_file = Some(setup.out.path().join("answer.txt"));
    setup
        .runtime
        .block_on(setup.home.client().create(&spec))
        .expect("create");
    let mut window = setup.window();
    wait_until(&mut window, "the job", |w| w.state().job_count() == 1);
    window.get_by_label("form").click();
    window.run_ok();
    wait_until(&mut window, "the reply section", |w| shows(w, "Reply"));
    assert!(shows(
        &window,
        "named by the server once the upload is done"
    ));
    let saved_to = format!(
        "Saved by Complete to {}",
        setup.out.path().join("answer.txt").display()
    );
    assert!(shows(&window, &saved_to));
    assert!(!is_disabled(&window, "Resume"), "uploads can run");
}

#[test]
fn settings_change_the_service_limits() {
    let setup = Setup::new("");
    let mut window = setup.window();
    wait_until(&mut window, "the connection", |w| {
        w.state().connection() == &Connection::Up
    });
    click(&mut window, "Settings");
    wait_until(&mut window, "the service's configuration", |w| {
        shows(w, "Jobs per user")
    });
    window
        .get_by_label("Jobs per user")
        .set_value_accesskit(5.0);
    window.run_ok();
    // A warning window as long as the timeout is refused before it reaches the service.
    window
        .get_by_label("Near-timeout warning")
        .set_value_accesskit(90.0 * 86_400.0);
    window.run_ok();
    click(&mut window, "Save limits and timeouts");
    assert!(shows(&window, "inactivity_warning_secs"));
    window
        .get_by_label("Near-timeout warning")
        .set_value_accesskit(86_400.0);
    window.run_ok();
    click(&mut window, "Save limits and timeouts");
    wait_until(&mut window, "the save", |w| shows(w, "Saved and in force."));
    let config = setup
        .runtime
        .block_on(setup.home.client().config())
        .expect("config");
    assert_eq!(config.max_jobs_per_user, 5);
    assert_eq!(config.inactivity_warning_secs, 86_400);

    // The bandwidth schedule: a window added (working hours, limiting nothing yet) and the
    // idle-bandwidth switch turned off, saved with the rest.
    click(&mut window, "Add a window");
    window
        .get_by_label("Use only idle bandwidth: give way to other traffic on this machine")
        .click();
    window.run_ok();
    click(&mut window, "Save limits and timeouts");
    // Saved: the draft is the service's config again, nothing left to save.
    wait_until(&mut window, "the second save", |w| {
        is_disabled(w, "Save limits and timeouts")
    });
    let config = setup
        .runtime
        .block_on(setup.home.client().config())
        .expect("config");
    assert!(!config.idle_bandwidth_for_background);
    let windows = &config.bandwidth_policy.windows;
    assert_eq!(windows.len(), 1, "{windows:?}");
    assert_eq!(windows[0].describe(), "Mon–Fri 09:00–17:00");
}

#[test]
fn everything_is_reachable_from_the_keyboard() {
    let setup = Setup::new("");
    let data = content(40_000, 30);
    setup.server.put("/keys.bin", data.clone());
    let id = setup.job("keys", &["/keys.bin"]);
    let mut window = setup.window();
    wait_until(&mut window, "the job", |w| shows(w, "keys"));

    window.key_press(egui::Key::ArrowDown); // the first row
    window.run_ok();
    assert!(!is_disabled(&window, "Resume"), "the row is selected");
    window.key_press(egui::Key::Space); // SUSPENDED: resume
    wait_until(&mut window, "TRANSFERRED", |w| {
        job_state(w, id) == Some(JobState::Transferred)
    });

    window.key_press(egui::Key::Delete); // Cancel asks first
    window.run_ok();
    assert!(shows(&window, "Cancel this job?"));
    click(&mut window, "Keep jobs");
    assert_eq!(setup.state(id), JobState::Transferred);

    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter); // Complete
    wait_until(&mut window, "ACKNOWLEDGED", |w| {
        job_state(w, id) == Some(JobState::Acknowledged)
    });
    assert_eq!(
        std::fs::read(setup.out.path().join("keys.bin")).expect("file"),
        data
    );

    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::N);
    window.run_ok();
    assert!(shows(&window, "URLs, one per line:"));
}

/// The titles of the toasts shown now.
fn toasts_with(window: &Harness<'static, FerryApp>, text: &str) -> usize {
    window
        .state()
        .toast_titles()
        .iter()
        .filter(|t| t.contains(text))
        .count()
}

/// The table cell showing `text` (the leftmost node with that label: the details panel and the
/// toasts are to its right).
fn row_cell<'a>(window: &'a Harness<'static, FerryApp>, text: &'a str) -> egui_kittest::Node<'a> {
    window
        .get_all_by_label(text)
        .min_by(|a, b| a.rect().min.x.total_cmp(&b.rect().min.x))
        .unwrap_or_else(|| panic!("no cell {text:?}"))
}

/// Focuses the field labelled `label` and types `text` into it.
fn type_into(window: &mut Harness<'static, FerryApp>, label: &str, text: &str) {
    window.get_by_label(label).focus();
    window.run_ok();
    window.get_by_label(label).type_text(text);
    window.run_ok();
}

fn inside(window: &Harness<'static, FerryApp>, node: &egui_kittest::Node<'_>) -> bool {
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, window.ctx.content_rect().size());
    screen.contains_rect(node.rect())
}

#[test]
fn a_storm_of_expiry_warnings_is_one_toast_and_keep_all_keeps_them() {
    // Every job is "near" its timeout a second after its last activity.
    let setup = Setup::new(
        "job_inactivity_timeout_secs: 3600, inactivity_warning_secs: 3599, max_jobs_per_user: 300",
    );
    let ids = setup.jobs("idle", 150);
    let before: Vec<_> = ids
        .iter()
        .map(|id| {
            setup
                .runtime
                .block_on(setup.home.client().job(*id))
                .expect("job")
                .times
                .modified
        })
        .collect();
    let mut window = setup.window();
    wait_until(&mut window, "the grouped warning", |w| {
        shows(w, "150 jobs expire within 59 min")
    });
    assert_eq!(toasts_with(&window, "expire"), 1, "one toast for 150 jobs");
    // Soonest deadline first: the first created.
    assert!(shows(&window, "“idle-0”, “idle-1”, “idle-2” and 147 more"));
    // Nothing is dropped: the centre has a line per job.
    click(&mut window, "🔔 150");
    assert!(shows(&window, "150 this session"));
    click(&mut window, "Keep all");
    wait_until(&mut window, "every job kept", |w| {
        ids.iter()
            .zip(&before)
            .all(|(id, then)| w.state().job(id).is_some_and(|j| j.times.modified > *then))
    });
}

#[test]
fn a_small_window_with_hundreds_of_jobs_stays_usable() {
    let setup = Setup::new("max_jobs_per_user: 300");
    let ids = setup.jobs("bulk", 203);
    // Three finished jobs in the mix: Cancel skips them and says so.
    for id in &ids[..3] {
        setup
            .runtime
            .block_on(setup.home.client().cancel(*id))
            .expect("cancel");
    }
    let mut window = setup.window_with(Look {
        size: [800.0, 500.0],
        ..Look::default()
    });
    wait_until(&mut window, "203 jobs", |w| w.state().job_count() == 203);
    // The toolbar is one row: the job actions fold into a menu, the filter stays on screen.
    assert!(
        window
            .query_all_by_role_and_label(Role::Button, "Resume")
            .next()
            .is_none(),
        "Resume is in the Actions menu"
    );
    let actions = window.get_by_label("Actions ⏷");
    assert!(inside(&window, &actions));
    let filter = window.get_by_label("Filter");
    assert!(inside(&window, &filter), "the filter field is on screen");
    assert!(actions.rect().max.y < 60.0, "the toolbar is one row");

    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    window.run_ok();
    assert_eq!(window.state().selection().len(), 203);
    window.key_press(egui::Key::Delete);
    window.run_ok();
    assert!(shows(&window, "Cancel 200 jobs?"));
    assert!(shows(
        &window,
        "200 jobs, 0 B downloaded so far is deleted. The first 10 are listed."
    ));
    assert!(shows(&window, "… and 190 more"));
    assert!(shows(&window, "3 skipped: “bulk-"));
    assert!(shows(
        &window,
        "is CANCELLED: a finished job cannot be changed"
    ));
    let yes = button(&window, "Cancel jobs");
    assert!(
        inside(&window, &yes),
        "the answer is on screen: {:?}",
        yes.rect()
    );
    assert!(inside(&window, &button(&window, "Keep jobs")));
    click(&mut window, "Cancel jobs");
    wait_until(&mut window, "all cancelled", |w| {
        ids.iter()
            .all(|id| matches!(job_state(w, *id), None | Some(JobState::Cancelled)))
    });
    // A cancelled row shows what was downloaded, no progress bar.
    assert_eq!(window.query_all_by_role(Role::ProgressIndicator).count(), 0);
}

#[test]
fn the_details_panel_stays_bounded_and_the_selection_follows_the_view() {
    let setup = Setup::new("");
    let long = setup.job("long", &["/long.bin"]);
    let other = setup.job("other", &["/other.bin"]);
    let text = "a very long description without a break ".repeat(24);
    setup
        .runtime
        .block_on(setup.home.client().set(
            long,
            &[ferry::job::PropertyChange::Description(text.clone())],
        ))
        .expect("set");
    let mut window = setup.window();
    wait_until(&mut window, "the jobs", |w| w.state().job_count() == 2);
    window.key_press(egui::Key::ArrowDown);
    window.run_ok();
    window.run_ok();
    let selected = window.state().selection();
    assert_eq!(selected.len(), 1);
    // Sorted by name: "long" is the first row.
    assert_eq!(window.state().selection(), [long]);
    window.run_ok();
    assert!(shows(&window, "a very long description"));
    let width = window.state().layout().details_width;
    assert!(
        width <= 700.0,
        "the panel is at most half the window: {width}"
    );
    assert!(
        inside(&window, &window.get_by_label("Name ⏶")),
        "the table keeps its first column"
    );

    // Shift+Down extends the selection, Shift+Up shrinks it back.
    window.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::ArrowDown);
    window.run_ok();
    assert_eq!(window.state().selection().len(), 2);
    window.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::ArrowUp);
    window.run_ok();
    assert_eq!(window.state().selection(), [long]);
    window.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::ArrowDown);
    window.run_ok();
    assert!(shows(&window, "2 selected"));
    // Filtered out of view: out of the selection (and of "N selected").
    type_into(&mut window, "Filter", "other");
    window.run_ok();
    window.run_ok();
    assert_eq!(window.state().selection(), [other]);
    assert!(!shows(&window, "2 selected"));
}

#[test]
fn ctrl_n_takes_typing_and_enter_creates() {
    let setup = Setup::new("");
    setup.server.put("/typed.bin", content(5000, 40));
    let mut window = setup.window();
    wait_until(&mut window, "the connection", |w| {
        w.state().connection() == &Connection::Up
    });
    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::N);
    window.run_ok();
    window.run_ok();
    let urls = window.get_by_label("URLs, one per line:");
    assert!(urls.is_focused(), "the URL field has the keyboard");
    type_into(
        &mut window,
        "URLs, one per line:",
        &setup.server.url("/typed.bin"),
    );
    click(&mut window, "Browse…"); // the test's folder
    window.get_by_label("URLs, one per line:").focus();
    window.run_ok();
    window.key_press(egui::Key::Enter);
    window.run_ok();
    // The job can show up (a snapshot) a frame before the answer that closes the dialog.
    wait_until(&mut window, "the typed job, the dialog closed", |w| {
        w.state().job_count() == 1 && !shows(w, "URLs, one per line:")
    });
}

#[test]
fn the_layout_is_remembered_in_gui_ron() {
    let setup = Setup::new("");
    setup.job("remembered", &["/r.bin"]);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gui.ron");
    let clock = Arc::new(ferry::engine::ManualClock::new(chrono::Utc::now()));
    let mut window = setup.window_with(Look {
        settings_path: Some(path.clone()),
        clock: clock.clone(),
        ..Look::default()
    });
    wait_until(&mut window, "the job", |w| w.state().job_count() == 1);
    click(&mut window, "Last activity");
    type_into(&mut window, "Filter", "rem");
    window.run_ok();
    assert!(!path.exists(), "not saved while it changes");
    clock.advance(Duration::from_secs(2));
    window.run_ok();
    window.state().flush_saves();
    let saved = std::fs::read_to_string(&path).expect("saved");
    assert!(
        saved.contains("sort: LastActivity") && saved.contains("filter: \"rem\""),
        "{saved}"
    );
    drop(window);

    let window = setup.window_with(Look {
        settings_path: Some(path),
        ..Look::default()
    });
    let layout = window.state().layout();
    assert_eq!(layout.filter, "rem");
    assert_eq!(layout.sort, ferry::gui::model::Column::LastActivity);
}

#[test]
fn a_second_launch_raises_the_first_window_with_its_urls() {
    let bus = crate::home::SessionBus::start();
    let first = ferry::gui::instance::claim_on_bus(bus.address(), &[], || {}).expect("claim");
    let ferry::gui::instance::Claim::First(_instance, activations) = first else {
        panic!("the first launch owns the window");
    };
    let urls = vec!["http://127.0.0.1:1/a.iso".to_string()];
    let second = ferry::gui::instance::claim_on_bus(bus.address(), &urls, || {}).expect("claim");
    assert!(matches!(second, ferry::gui::instance::Claim::Raised));
    let activation = activations.recv_timeout(PATIENCE).expect("activated");
    assert_eq!(activation.urls, urls);
}

#[test]
fn without_a_desktop_file_dialog_the_window_shows_its_own() {
    let setup = Setup::new("");
    let picked = setup.out.path().join("picked");
    std::fs::create_dir(&picked).expect("folder");
    let settings = tempfile::tempdir().expect("dir");
    let path = settings.path().join("gui.ron");
    std::fs::write(
        &path,
        format!(
            "(default_folder: {:?})",
            setup.out.path().display().to_string()
        ),
    )
    .expect("gui.ron");
    // No portal, no zenity: the pickers say so.
    let mut window = window_with(
        Connect::Socket(setup.home.socket()),
        None,
        Look {
            settings_path: Some(path),
            ..Look::default()
        },
    );
    wait_until(&mut window, "the connection", |w| {
        w.state().connection() == &Connection::Up
    });
    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::N);
    window.run_ok();
    click(&mut window, "Browse…");
    assert!(
        shows(&window, "Choose the destination folder"),
        "Ferry's own dialog"
    );
    wait_until(&mut window, "the folder's entries", |w| {
        shows(w, "🗀 picked")
    });
    window.get_by_label("🗀 picked").click();
    window.run_ok();
    click(&mut window, "Choose");
    window.run_ok();
    assert!(!shows(&window, "Choose the destination folder"), "closed");
    assert_eq!(
        window.get_by_label("Folder").value().as_deref(),
        Some(picked.to_str().expect("utf-8 path"))
    );
}

#[test]
fn the_context_menu_edits_the_url_of_a_failed_job_and_retries() {
    let setup = Setup::new("");
    let data = content(30_000, 50);
    setup.server.put("/moved.bin", data.clone());
    // Nothing at /gone.bin: the job goes to ERROR (404).
    let id = setup.job("moved", &["/gone.bin"]);
    setup
        .runtime
        .block_on(setup.home.client().resume(id))
        .expect("resume");
    let mut window = setup.window();
    wait_until(&mut window, "ERROR", |w| {
        job_state(w, id) == Some(JobState::Error)
    });
    row_cell(&window, "moved").click_secondary();
    window.run_ok();
    assert_eq!(
        window.state().selection(),
        [id],
        "the right click selects the row"
    );
    assert!(!is_disabled(&window, "Retry"), "Retry for a job in ERROR");
    assert!(is_disabled(&window, "Open file"), "nothing to open yet");
    assert!(!is_disabled(&window, "Copy URL"));
    click(&mut window, "Edit URL…");
    assert!(shows(&window, "Edit URL"));
    let field = window.get_by_label("URL");
    assert_eq!(
        field.value().as_deref(),
        Some(setup.server.url("/gone.bin").as_str())
    );
    // Replace the text: select all, then type.
    field.focus();
    window.run_ok();
    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    window.run_ok();
    window
        .get_by_label("URL")
        .type_text(&setup.server.url("/moved.bin"));
    window.run_ok();
    click(&mut window, "Save and retry");
    wait_until(&mut window, "TRANSFERRED from the new URL", |w| {
        job_state(w, id) == Some(JobState::Transferred)
    });
    let job = window.state().job(&id).expect("job").clone();
    assert_eq!(job.files[0].remote_url, setup.server.url("/moved.bin"));
    // Complete from the menu, then the file opens on a double click (not run here: xdg-open).
    row_cell(&window, "moved").click_secondary();
    window.run_ok();
    click(&mut window, "Complete");
    wait_until(&mut window, "ACKNOWLEDGED", |w| {
        job_state(w, id) == Some(JobState::Acknowledged)
    });
    assert_eq!(
        std::fs::read(setup.out.path().join("gone.bin")).expect("file"),
        data
    );
}

#[test]
fn a_name_conflict_offers_rename_and_replace() {
    let setup = Setup::new("");
    let data = content(8000, 60);
    setup.server.put("/conflict.bin", data.clone());
    let taken = setup.out.path().join("conflict.bin");
    std::fs::write(&taken, b"mine").expect("write");
    let mut window = setup.window();
    wait_until(&mut window, "the connection", |w| {
        w.state().connection() == &Connection::Up
    });
    let ask = |window: &mut Harness<'static, FerryApp>| {
        window.event(egui::Event::Paste(setup.server.url("/conflict.bin")));
        window.run_ok();
        click(window, "Browse…");
        click(window, "Create download");
        wait_until(window, "the conflict", |w| {
            shows(w, "A file of that name is there already")
        });
        assert!(shows(window, "already exists"));
    };
    ask(&mut window);
    click(&mut window, "Rename");
    let renamed = setup.out.path().join("conflict (1).bin");
    wait_until(&mut window, "the renamed download", |w| {
        w.state().job_count() == 1 && renamed.exists()
    });
    assert_eq!(std::fs::read(&renamed).expect("file"), data);
    assert_eq!(std::fs::read(&taken).expect("file"), b"mine", "untouched");

    ask(&mut window);
    click(&mut window, "Replace");
    wait_until(&mut window, "the file replaced", |w| {
        w.state().job_count() == 2 && std::fs::read(&taken).is_ok_and(|d| d == data)
    });
}

#[test]
fn screen_readers_get_rows_with_their_state_and_the_reasons_of_disabled_buttons() {
    let setup = Setup::new("");
    let ids = setup.jobs("row", 3);
    let mut window = setup.window();
    wait_until(&mut window, "the jobs", |w| w.state().job_count() == 3);
    let rows: Vec<_> = window.query_all_by_role(Role::Row).collect();
    assert_eq!(rows.len(), 3, "one row per job");
    let first = rows[0].accesskit_node();
    let label = first.label().unwrap_or_default();
    assert!(
        label.starts_with("row-0, SUSPENDED, 0 B of unknown size"),
        "{label}"
    );
    assert!(!first.is_selected().unwrap_or(false));
    // Nothing selected: Complete says why, to the pointer and to the screen reader.
    let complete = button(&window, "Complete");
    assert_eq!(
        complete.accesskit_node().description().as_deref(),
        Some("Select one or more jobs first.")
    );
    window.key_press(egui::Key::ArrowDown);
    window.run_ok();
    let selected: Vec<bool> = window
        .query_all_by_role(Role::Row)
        .map(|r| r.accesskit_node().is_selected().unwrap_or(false))
        .collect();
    assert_eq!(selected, [true, false, false]);
    assert_eq!(window.state().selection(), [ids[0]]);
    // Suspend follows the state: nothing to suspend in a SUSPENDED job.
    let suspend = button(&window, "Suspend");
    assert!(suspend.accesskit_node().is_disabled());
    assert_eq!(
        suspend.accesskit_node().description().as_deref(),
        Some("“row-0” is SUSPENDED already.")
    );
    assert!(!is_disabled(&window, "Resume"));
}

#[test]
fn the_history_page_lists_finished_jobs_and_downloads_again() {
    let setup = Setup::new("");
    setup.server.put("/old.bin", content(3000, 90));
    let id = setup.job("old", &["/old.bin"]);
    let client = setup.home.client();
    setup.runtime.block_on(async {
        client.resume(id).await.expect("resume");
    });
    let mut window = setup.window();
    wait_until(&mut window, "TRANSFERRED", |w| {
        job_state(w, id) == Some(JobState::Transferred)
    });
    row_cell(&window, "old").click();
    window.run_ok();
    click(&mut window, "Complete");
    wait_until(&mut window, "ACKNOWLEDGED", |w| {
        job_state(w, id) == Some(JobState::Acknowledged)
    });
    click(&mut window, "History");
    wait_until(&mut window, "the history", |w| {
        w.state().history().is_some_and(|h| h.len() == 1)
    });
    assert!(shows(&window, "1 finished job(s)"));
    let rows: Vec<_> = window.query_all_by_role(Role::Row).collect();
    assert_eq!(rows.len(), 1);
    row_cell(&window, "old").click_secondary();
    window.run_ok();
    click(&mut window, "Download again");
    let urls = window.get_by_label("URLs, one per line:");
    assert_eq!(
        urls.value().as_deref(),
        Some(setup.server.url("/old.bin").as_str())
    );
    click(&mut window, "Close");
    click(&mut window, "Clear history");
    wait_until(&mut window, "an empty history", |w| {
        w.state().history().is_some_and(<[_]>::is_empty)
    });
    assert!(shows(&window, "Nothing finished yet"));
}

#[test]
fn the_status_bar_sets_the_global_download_limit_of_the_service() {
    let setup = Setup::new("");
    let mut window = setup.window();
    wait_until(&mut window, "the limits", |w| shows(w, "Download limit"));
    window
        .get_by_role_and_label(egui::accesskit::Role::ComboBox, "Download limit")
        .click();
    window.run_ok();
    click(&mut window, "2 MiB/s");
    let client = setup.home.client();
    let limit = |setup: &Setup| {
        setup
            .runtime
            .block_on(client.config())
            .expect("config")
            .download_limit
    };
    wait_until(&mut window, "the service's new limit", |_| {
        limit(&setup).is_some()
    });
    assert_eq!(limit(&setup), ferry::job::Rate::parse("2M").ok());
    // The Settings page shows the same limit, and the upload limit as it was.
    click(&mut window, "Settings");
    wait_until(&mut window, "the service's configuration", |w| {
        shows(w, "Upload limit")
    });
    let values: Vec<Option<String>> = window
        .query_all_by_role(Role::ComboBox)
        .filter(|n| {
            let label = n.accesskit_node().label();
            label.as_deref() == Some("Download limit") || label.as_deref() == Some("Upload limit")
        })
        .map(|n| n.accesskit_node().value().map(|v| v.to_string()))
        .collect();
    assert!(
        values.contains(&Some("2 MiB/s".into())) && values.contains(&Some("none".into())),
        "the limits' menus show {values:?}"
    );
}
