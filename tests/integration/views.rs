//! The job and history views alone, on a seeded `Jobs` and no service: what the user clicks or
//! types becomes the right `Command`s, and the view's own state (filter, selection, cursor)
//! follows. The window that carries the commands out is tested against a real service in gui.rs.

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use ferry::gui::model::{Jobs, Now};
use ferry::gui::{Action, Command, JobsView, Request};
use ferry::job::{Job, JobDefaults, JobFile, JobId, JobState, JobType, PropertyChange, Timestamp};
use std::time::Duration;

fn at(minute: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).expect("time")
}

/// A download of one 1000-byte file named `name`, last active at minute `minute`.
fn job(name: &str, state: JobState, minute: i64) -> Job {
    let mut job = Job::new(
        JobId::new_random(),
        JobType::Download,
        name,
        "me",
        &JobDefaults::default(),
        at(minute),
    )
    .expect("job");
    job.state = state;
    let done = if state == JobState::Suspended { 0 } else { 400 };
    job.files.push(JobFile {
        remote_url: format!("http://127.0.0.1/{name}.bin"),
        local_path: format!("/srv/out/{name}.bin").into(),
        temp_path: format!("/srv/out/.{name}.bin.ferry").into(),
        ranges: None,
        bytes_total: Some(1000),
        bytes_transferred: done,
        bytes_checkpointed: done,
        transferred: matches!(state, JobState::Transferred | JobState::Acknowledged),
        completed: state == JobState::Acknowledged,
        validators: None,
        segments: Vec::new(),
        checksum: None,
        checksum_verified: false,
    });
    job
}

/// What the window gives the Jobs view: the jobs, the time, and where commands go.
struct Page {
    view: JobsView,
    jobs: Jobs,
    now: Now,
    stale: bool,
    out: Vec<Command>,
}

impl Page {
    fn new(jobs: Vec<Job>) -> Page {
        let mut all = Jobs::default();
        all.replace_all(jobs, 0.0);
        Page {
            view: JobsView::default(),
            jobs: all,
            // Ten days after minute 0: jobs idle since then are stale (7 days).
            now: Now {
                wall: at(10 * 24 * 60),
                mono: 1.0,
                inactivity_timeout: Duration::from_secs(90 * 86_400),
                limits: Default::default(),
            },
            stale: false,
            out: Vec::new(),
        }
    }
}

/// The Jobs page as the window lays it out: the actions, the details of one selected job, and
/// the table.
fn page(jobs: Vec<Job>) -> Harness<'static, Page> {
    Harness::builder()
        .with_size([1200.0, 700.0])
        .with_step_dt(0.05)
        .build_ui_state(
            |ui, page: &mut Page| {
                let Page {
                    view,
                    jobs,
                    now,
                    stale,
                    out,
                } = page;
                view.prepare(jobs, now, *stale);
                let ctx = ui.ctx().clone();
                if !ctx.egui_wants_keyboard_input() {
                    view.keys(&ctx, jobs, now, out);
                }
                ui.horizontal(|ui| view.actions(ui, jobs, out));
                if let Some(entry) = view.detail(jobs) {
                    egui::Panel::right("details")
                        .show(ui, |ui| ferry::gui::jobs_view::details(ui, entry, now, out));
                }
                view.table(ui, jobs, now, out);
            },
            Page::new(jobs),
        )
}

/// The commands pushed since the last call.
fn taken(window: &mut Harness<'static, Page>) -> Vec<Command> {
    std::mem::take(&mut window.state_mut().out)
}

/// The table cell showing `text` (the leftmost: the details panel is to its right).
fn cell<'a>(window: &'a Harness<'static, Page>, text: &'a str) -> egui_kittest::Node<'a> {
    window
        .get_all_by_label(text)
        .min_by(|a, b| a.rect().min.x.total_cmp(&b.rect().min.x))
        .unwrap_or_else(|| panic!("no cell {text:?}"))
}

fn button<'a>(window: &'a Harness<'static, Page>, label: &'a str) -> egui_kittest::Node<'a> {
    window
        .get_all_by_role_and_label(Role::Button, label)
        .next()
        .unwrap_or_else(|| panic!("no button {label:?}"))
}

fn click(window: &mut Harness<'static, Page>, label: &str) {
    button(window, label).click();
    window.run_ok();
}

/// Right-clicks the row showing `text`: its context menu opens.
fn open_menu(window: &mut Harness<'static, Page>, text: &str) {
    cell(window, text).click_secondary();
    window.run_ok();
}

fn selected(window: &Harness<'static, Page>) -> Vec<JobId> {
    window.state().view.selection().iter().copied().collect()
}

fn id_of(window: &Harness<'static, Page>, name: &str) -> JobId {
    window
        .state()
        .jobs
        .iter()
        .find(|e| e.job.display_name == name)
        .map(|e| e.job.id)
        .expect("job")
}

#[test]
fn the_row_menu_of_a_failed_job_retries_and_edits_its_url() {
    let mut window = page(vec![
        job("alpha", JobState::Suspended, 100),
        job("broken", JobState::Error, 100),
    ]);
    window.run_ok();
    let broken = id_of(&window, "broken");
    open_menu(&mut window, "broken");
    assert_eq!(selected(&window), [broken], "a right click selects the row");
    assert!(
        button(&window, "Open file").accesskit_node().is_disabled(),
        "nothing to open before the job is completed"
    );
    click(&mut window, "Retry");
    match taken(&mut window).as_slice() {
        [Command::Request(Request::Act(Action::Resume, ids))] => assert_eq!(ids, &[broken]),
        other => panic!("Retry asked for {other:?}"),
    }
    open_menu(&mut window, "broken");
    click(&mut window, "Edit URL…");
    match taken(&mut window).as_slice() {
        [Command::EditUrl(id, 0)] => assert_eq!(*id, broken),
        other => panic!("Edit URL asked for {other:?}"),
    }
    open_menu(&mut window, "broken");
    click(&mut window, "Copy URL");
    match taken(&mut window).as_slice() {
        [Command::Copy(text)] => assert_eq!(text, "http://127.0.0.1/broken.bin"),
        other => panic!("Copy URL asked for {other:?}"),
    }
}

#[test]
fn keys_select_extend_and_ask_for_the_suitable_jobs() {
    let names = ["a", "b", "c", "d", "e"];
    let mut window = page(
        names
            .iter()
            .map(|n| job(n, JobState::Suspended, 100))
            .collect(),
    );
    window.run_ok();
    cell(&window, "b").click();
    window.run_ok();
    window.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::ArrowDown);
    window.run_ok();
    window.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::ArrowDown);
    window.run_ok();
    let ids = |window: &Harness<'static, Page>, ns: &[&str]| -> Vec<JobId> {
        let mut ids: Vec<JobId> = ns.iter().map(|n| id_of(window, n)).collect();
        ids.sort();
        ids
    };
    assert_eq!(selected(&window), ids(&window, &["b", "c", "d"]));
    // Back up: the range shrinks towards the anchor.
    window.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::ArrowUp);
    window.run_ok();
    assert_eq!(selected(&window), ids(&window, &["b", "c"]));
    window.key_press(egui::Key::Space);
    window.run_ok();
    match taken(&mut window).as_slice() {
        [Command::Ask(Action::Resume, asked)] => assert_eq!(asked, &ids(&window, &["b", "c"])),
        other => panic!("Space asked for {other:?}"),
    }
    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    window.run_ok();
    window.key_press(egui::Key::Delete);
    window.run_ok();
    match taken(&mut window).as_slice() {
        [Command::Ask(Action::Cancel, asked)] => assert_eq!(asked.len(), 5),
        other => panic!("Delete asked for {other:?}"),
    }
    window.key_press(egui::Key::Escape);
    window.run_ok();
    assert!(selected(&window).is_empty());
}

#[test]
fn the_selection_is_what_the_filter_shows() {
    let mut window = page(vec![
        job("iso-one", JobState::Suspended, 100),
        job("iso-two", JobState::Suspended, 100),
        job("video", JobState::Suspended, 100),
    ]);
    window.run_ok();
    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    window.run_ok();
    assert_eq!(selected(&window).len(), 3);
    window.state_mut().view.spec.text = "ISO".into();
    window.run_ok();
    assert_eq!(
        selected(&window).len(),
        2,
        "the hidden row left the selection"
    );
    assert!(window.query_by_label("video").is_none());
    // A job that leaves the rows by an update leaves the selection too.
    let mut two = window
        .state()
        .jobs
        .get(&id_of(&window, "iso-two"))
        .expect("job")
        .job
        .clone();
    two.display_name = "renamed".into();
    two.files[0].remote_url = "http://127.0.0.1/renamed.bin".into();
    window.state_mut().jobs.update(two, 2.0);
    window.run_ok();
    assert_eq!(selected(&window), [id_of(&window, "iso-one")]);
}

/// Two presses of the primary button on the node, as a user's double click (the accessibility
/// click action is a single click).
fn double_click(window: &mut Harness<'static, Page>, text: &str) {
    // Half a second after any earlier click: a third press soon after two would be a triple.
    for _ in 0..10 {
        window.step();
    }
    let at = cell(window, text).rect().center();
    window.event(egui::Event::PointerMoved(at));
    window.step();
    // One frame each, 50 ms apart (see `page`): well within egui's double-click delay.
    for pressed in [true, false, true, false] {
        window.event(egui::Event::PointerButton {
            pos: at,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::NONE,
        });
        window.step();
    }
    window.run_ok();
}

#[test]
fn double_click_opens_a_completed_download_only() {
    let mut window = page(vec![
        job("done", JobState::Acknowledged, 100),
        job("half", JobState::Transferring, 100),
    ]);
    window.run_ok();
    double_click(&mut window, "half");
    assert!(
        taken(&mut window).is_empty(),
        "a double click on an unfinished job only selects it"
    );
    double_click(&mut window, "done");
    match taken(&mut window).as_slice() {
        [Command::Open(path)] => assert_eq!(path.to_str(), Some("/srv/out/done.bin")),
        other => panic!("a double click asked for {other:?}"),
    }
}

#[test]
fn the_details_set_complete_when_transferred() {
    let mut window = page(vec![job("big", JobState::Transferring, 100)]);
    window.run_ok();
    let id = id_of(&window, "big");
    cell(&window, "big").click();
    window.run_ok();
    let checkbox = window.get_by_role_and_label(Role::CheckBox, "Complete when transferred");
    checkbox.click();
    window.run_ok();
    match taken(&mut window).as_slice() {
        [Command::Request(Request::Set(ids, PropertyChange::CompleteWhenTransferred(true)))] => {
            assert_eq!(ids, &[id])
        }
        other => panic!("the checkbox asked for {other:?}"),
    }
}

#[test]
fn the_stale_view_lists_waiting_jobs_oldest_first_and_keeps_them_all() {
    let mut window = page(vec![
        job("fresh", JobState::Suspended, 10 * 24 * 60 - 5),
        job("old", JobState::Suspended, 0),
        job("older", JobState::Suspended, -60),
        job("waiting", JobState::Transferred, 10 * 24 * 60 - 5),
    ]);
    window.state_mut().stale = true;
    window.run_ok();
    assert!(
        window.query_by_label("fresh").is_none(),
        "fresh is not stale"
    );
    let rows: Vec<String> = window
        .get_all_by_role(Role::Row)
        .filter_map(|r| r.accesskit_node().label())
        .map(|l| l.split(',').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(rows, ["older", "old", "waiting"], "oldest activity first");
    click(&mut window, "Keep all");
    match taken(&mut window).as_slice() {
        [Command::Request(Request::Set(ids, PropertyChange::Touch))] => assert_eq!(ids.len(), 3),
        other => panic!("Keep all asked for {other:?}"),
    }
}

#[test]
fn actions_are_enabled_by_state_and_say_why_not() {
    let mut window = page(vec![
        job("running", JobState::Transferring, 100),
        job("paused", JobState::Suspended, 100),
    ]);
    window.run_ok();
    cell(&window, "running").click();
    window.run_ok();
    let resume = button(&window, "Resume");
    assert!(resume.accesskit_node().is_disabled());
    assert!(
        resume.accesskit_node().description().is_some(),
        "a disabled button says why to screen readers"
    );
    // A mixed selection: Resume acts, and asks for the selection (the window skips the running).
    window.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    window.run_ok();
    click(&mut window, "Resume");
    match taken(&mut window).as_slice() {
        [Command::Ask(Action::Resume, ids)] => assert_eq!(ids.len(), 2),
        other => panic!("Resume asked for {other:?}"),
    }
    let rows: Vec<bool> = window
        .get_all_by_role(Role::Row)
        .map(|r| r.accesskit_node().is_selected() == Some(true))
        .collect();
    assert_eq!(rows, [true, true], "rows carry their selected state");
}

#[test]
fn ten_thousand_jobs_with_updates_keep_their_order() {
    let mut jobs: Vec<Job> = (0..10_000)
        .map(|i| job(&format!("job-{i:05}"), JobState::Suspended, 100))
        .collect();
    let mut window = page(jobs.clone());
    window.run_ok();
    assert!(
        window.query_by_label("job-00000").is_some(),
        "sorted by name"
    );
    // The last job renamed to sort first: it moves to the top without a full re-sort.
    let last = jobs.last_mut().expect("job");
    last.display_name = "a-first".into();
    window.state_mut().jobs.update(last.clone(), 3.0);
    window.run_ok();
    let first_row = window
        .get_all_by_role(Role::Row)
        .next()
        .and_then(|r| r.accesskit_node().label())
        .expect("a row");
    assert!(first_row.starts_with("a-first"), "first row: {first_row}");
    // Far down the list, a click opens the details panel (fewer columns fit): the table stays
    // where it was, the clicked row in view, and its menu opens and stays open.
    window.event(egui::Event::PointerMoved(egui::pos2(300.0, 400.0)));
    for _ in 0..20 {
        window.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, -400.0),
            phase: egui::TouchPhase::Move,
            modifiers: egui::Modifiers::NONE,
            source: egui::MouseWheelSource::Wheel,
        });
        window.step();
    }
    window.run_ok();
    let label = window
        .get_all_by_role(Role::Row)
        .nth(5)
        .and_then(|r| r.accesskit_node().label())
        .expect("a row");
    let name = label.split(',').next().expect("name").to_string();
    assert!(name.as_str() > "job-00100", "scrolled down to {name}");
    open_menu(&mut window, &name);
    assert_eq!(window.state().view.selection().len(), 1);
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, window.ctx.content_rect().size());
    assert!(
        window
            .query_all_by_label(&name)
            .any(|n| n.rect().min.x < 400.0 && screen.contains_rect(n.rect())),
        "{name} left the view when the details opened"
    );
    assert!(
        window
            .query_by_role_and_label(Role::Button, "Cancel…")
            .is_some(),
        "the row menu closed when the columns changed"
    );
}

#[test]
fn the_history_filters_and_downloads_again() {
    use ferry::store::{HistoryEntry, HistoryFile};
    let entry = |name: &str, state: JobState| HistoryEntry {
        id: JobId::new_random(),
        name: name.into(),
        job_type: JobType::Download,
        state,
        created: at(0),
        finished: at(5),
        bytes: 1000,
        files: vec![HistoryFile {
            remote_url: format!("http://127.0.0.1/{name}.iso?token=t"),
            local_path: format!("/srv/out/{name}.iso").into(),
        }],
    };
    struct History {
        entries: Vec<HistoryEntry>,
        filter: String,
        out: Vec<Command>,
    }
    let mut window = Harness::builder().with_size([900.0, 500.0]).build_ui_state(
        |ui, h: &mut History| ferry::gui::history_table(ui, &h.entries, &h.filter, &mut h.out),
        History {
            entries: vec![
                entry("debian", JobState::Acknowledged),
                entry("fedora", JobState::Cancelled),
            ],
            filter: String::new(),
            out: Vec::new(),
        },
    );
    window.run_ok();
    assert!(
        window
            .query_by_label_contains("2 finished job(s)")
            .is_some()
    );
    window.state_mut().filter = "FEDORA".into();
    window.run_ok();
    assert!(window.query_by_label("debian").is_none(), "filtered out");
    window.get_by_label("fedora").click_secondary();
    window.run_ok();
    assert!(
        window
            .get_by_role_and_label(Role::Button, "Open file")
            .accesskit_node()
            .is_disabled(),
        "a cancelled job left no file to open"
    );
    window
        .get_by_role_and_label(Role::Button, "Download again")
        .click();
    window.run_ok();
    match window.state().out.as_slice() {
        [Command::NewDownload(urls)] => assert_eq!(urls, "http://127.0.0.1/fedora.iso?token=t"),
        other => panic!("Download again asked for {other:?}"),
    }
    window.state_mut().out.clear();
    window
        .get_by_role_and_label(Role::Button, "Clear history")
        .click();
    window.run_ok();
    assert!(matches!(
        window.state().out.as_slice(),
        [Command::Request(Request::ClearHistory)]
    ));
}

#[test]
fn the_details_show_a_split_files_pieces_and_set_connections_and_files_at_once() {
    let mut split = job("split", JobState::Transferring, 100);
    split.files[0].segments = vec![
        ferry::job::Segment {
            start: 0,
            end: 500,
            written: 400,
            flushed: 300,
        },
        ferry::job::Segment {
            start: 500,
            end: 1000,
            written: 1000,
            flushed: 1000,
        },
    ];
    let mut window = page(vec![split]);
    window.run_ok();
    let id = id_of(&window, "split");
    cell(&window, "split").click();
    window.run_ok();
    assert!(window.query_by_label("Pieces (2)").is_some(), "the pieces");
    assert!(window.query_by_label("400 B of 500 B from 0 B").is_some());
    assert!(window.query_by_label("500 B of 500 B from 500 B").is_some());
    window.get_by_label("Connections per file").click();
    window.run_ok();
    window.get_by_label("16").click();
    window.run_ok();
    match taken(&mut window).as_slice() {
        [Command::Request(Request::Set(ids, PropertyChange::Connections(Some(16))))] => {
            assert_eq!(ids, &[id])
        }
        other => panic!("the menu asked for {other:?}"),
    }
    window.get_by_label("Files at once").click();
    window.run_ok();
    window.get_by_label("4").click();
    window.run_ok();
    match taken(&mut window).as_slice() {
        [Command::Request(Request::Set(ids, PropertyChange::ParallelFiles(4)))] => {
            assert_eq!(ids, &[id])
        }
        other => panic!("the menu asked for {other:?}"),
    }
}

#[test]
fn a_job_the_schedule_holds_reads_held_not_a_speed() {
    let mut blocked = job("blocked", JobState::TransientError, 100);
    blocked.priority = ferry::job::Priority::Normal;
    blocked.error = Some(ferry::job::JobError::new(
        ferry::job::ErrorContext::GeneralQueueManager,
        ferry::job::ErrorCode::BlockedByPolicy,
        None,
    ));
    let mut window = page(vec![blocked]);
    window.run_ok();
    assert!(
        window.query_by_label("held").is_some(),
        "the speed cell says held"
    );
    assert!(
        window.query_by_label_contains("≤ ").is_none(),
        "no \"at most 0 B/s\" for a job that is not moving"
    );
    cell(&window, "blocked").click();
    window.run_ok();
    assert!(
        window
            .query_by_label_contains("Waiting for the bandwidth schedule")
            .is_some(),
        "the details say why"
    );
}

#[test]
fn a_job_held_back_by_its_speed_limit_says_so_and_the_details_change_the_limit() {
    let rate = |t: &str| ferry::job::Rate::parse(t).expect("rate");
    let mut limited = job("limited", JobState::Transferring, 100);
    limited.limit_rate = Some(rate("1M"));
    limited.files[0].bytes_total = Some(100 << 20);
    let mut window = page(vec![limited.clone()]);
    // One MiB a second, as the service reports it.
    limited.files[0].bytes_transferred = 1 << 20;
    window.state_mut().jobs.update(limited, 1.0);
    window.state_mut().now.mono = 1.1;
    window.run_ok();
    assert!(
        window.query_by_label_contains("≤ ").is_some(),
        "the speed cell marks the limit"
    );
    let id = id_of(&window, "limited");
    cell(&window, "limited").click();
    window.run_ok();
    assert!(
        window
            .query_by_label("Held back by its own speed limit (1 MiB/s)")
            .is_some(),
        "the details say which limit"
    );
    // A global limit below the job's takes over the explanation.
    window.state_mut().now.limits.download = Some(rate("512K"));
    window.run_ok();
    assert!(
        window.query_by_label_contains("≤ ").is_some(),
        "1 MiB/s is above 512 KiB/s: still held back"
    );
    assert!(
        window
            .query_by_label("Held back by the global download limit (512 KiB/s)")
            .is_some()
    );
    window.get_by_label("Speed limit").click();
    window.run_ok();
    window.get_by_label("5 MiB/s").click();
    window.run_ok();
    match taken(&mut window).as_slice() {
        [Command::Request(Request::Set(ids, PropertyChange::LimitRate(Some(r))))] => {
            assert_eq!((ids.as_slice(), *r), (&[id][..], rate("5M")))
        }
        other => panic!("the menu asked for {other:?}"),
    }
    window.get_by_label("Speed limit").click();
    window.run_ok();
    window.get_by_label("none").click();
    window.run_ok();
    match taken(&mut window).as_slice() {
        [Command::Request(Request::Set(_, PropertyChange::LimitRate(None)))] => {}
        other => panic!("the menu asked for {other:?}"),
    }
}
