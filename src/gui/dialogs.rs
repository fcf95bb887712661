//! The modal dialogs: new download, new upload, and the confirmations of Complete and Cancel.

use super::app::{FerryApp, PickKind};
use super::bridge::{Action, Request};
use super::rules::{self, Confirmation};
use crate::engine::JobSpec;
use crate::job::{FileRange, JobType, NewFile, Priority};
use egui::{Id, Modal, RichText};
use std::path::{Path, PathBuf};

pub enum Dialog {
    NewDownload(DownloadForm),
    NewUpload(UploadForm),
    /// SetRemoteName: a new address for one file of a download job, then Resume.
    EditUrl {
        id: crate::job::JobId,
        file: usize,
        url: String,
        error: Option<String>,
    },
    Confirm {
        action: Action,
        ids: Vec<crate::job::JobId>,
        text: Confirmation,
        /// The selected jobs the action leaves out, and why.
        skipped: Option<String>,
    },
}

impl Dialog {
    /// The service refused the job: say why in the form, which stays open. A name conflict
    /// offers Rename and Replace.
    pub fn failed(&mut self, why: String, code: Option<crate::job::ErrorCode>) {
        match self {
            Dialog::NewDownload(form) => {
                form.busy = false;
                form.error = Some(why);
                form.conflict = code == Some(crate::job::ErrorCode::FileExists);
            }
            Dialog::NewUpload(form) => {
                form.busy = false;
                form.error = Some(why);
            }
            Dialog::EditUrl { error, .. } => *error = Some(why),
            Dialog::Confirm { .. } => {}
        }
    }

    pub fn picked(&mut self, kind: PickKind, path: PathBuf) {
        match (self, kind) {
            (Dialog::NewDownload(form), PickKind::DownloadFolder) => {
                form.folder = path.display().to_string()
            }
            (Dialog::NewDownload(form), PickKind::UrlList) => form.import(&path),
            (Dialog::NewUpload(form), PickKind::UploadFile) => {
                form.local = path.display().to_string()
            }
            _ => {}
        }
    }
}

/// Ferry's own file dialog, for desktops without a portal or zenity: a folder's entries, Up,
/// a Location field, Choose and Cancel, every widget labelled for screen readers. The folder is
/// read on a thread of its own (a slow mount never stalls the window).
pub struct BuiltinPicker {
    pub kind: PickKind,
    dir: PathBuf,
    location: String,
    /// The folder's entries, folders first; `None` while being read.
    entries: Option<Listing>,
    listing: Option<std::sync::mpsc::Receiver<Listing>>,
    selected: Option<String>,
}

/// A folder's entries, (name, is a folder), or why it cannot be read.
type Listing = Result<Vec<(String, bool)>, String>;

/// Entries listed of one folder at most.
const PICKER_ENTRIES: usize = 5000;

impl BuiltinPicker {
    pub fn open(kind: PickKind, start: &Path) -> BuiltinPicker {
        // A start that is not a folder (a file, or nothing typed yet): its folder, or home.
        let dir = if start.is_dir() {
            start.to_path_buf()
        } else {
            start
                .parent()
                .filter(|p| p.is_dir())
                .map(Path::to_path_buf)
                .or_else(|| directories::UserDirs::new().map(|d| d.home_dir().to_path_buf()))
                .unwrap_or_else(|| PathBuf::from("/"))
        };
        let mut picker = BuiltinPicker {
            kind,
            location: dir.display().to_string(),
            dir,
            entries: None,
            listing: None,
            selected: None,
        };
        picker.read(picker.dir.clone());
        picker
    }

    /// Starts reading `dir` (the list shows when it is read).
    fn read(&mut self, dir: PathBuf) {
        let (tx, rx) = std::sync::mpsc::channel();
        let folders_only = self.kind.wants_folder();
        let spawned = std::thread::Builder::new()
            .name("ferry-picker".into())
            .spawn({
                let dir = dir.clone();
                move || {
                    let _ = tx.send(list_folder(&dir, folders_only));
                }
            });
        self.location = dir.display().to_string();
        self.dir = dir;
        self.selected = None;
        match spawned {
            Ok(_) => {
                self.entries = None;
                self.listing = Some(rx);
            }
            Err(e) => self.entries = Some(Err(format!("cannot read the folder: {e}"))),
        }
    }

    /// Draws the dialog; `Some(answer)` once the user chose (`Some(path)`) or closed it (`None`).
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Option<PathBuf>> {
        if let Some(rx) = &self.listing {
            match rx.try_recv() {
                Ok(entries) => {
                    self.entries = Some(entries);
                    self.listing = None;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    ctx.request_repaint_after(std::time::Duration::from_millis(50))
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.entries = Some(Err("cannot read the folder".into()));
                    self.listing = None;
                }
            }
        }
        let mut answer = None;
        let mut go_to = None;
        let modal = Modal::new(Id::unique("ferry-picker")).show(ctx, |ui| {
            ui.set_width((ctx.content_rect().width() - 60.0).clamp(280.0, 560.0));
            ui.heading(self.kind.title());
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(self.dir.parent().is_some(), egui::Button::new("⬆ Up"))
                    .on_hover_text("The parent folder")
                    .clicked()
                {
                    go_to = self.dir.parent().map(Path::to_path_buf);
                }
                let label = ui.label("Location");
                let field = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.location).desired_width(f32::INFINITY),
                    )
                    .labelled_by(label.id);
                if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    go_to = Some(PathBuf::from(self.location.trim()));
                }
            });
            let room = (ctx.content_rect().height() - 220.0).max(80.0);
            egui::ScrollArea::vertical()
                .max_height(room)
                .auto_shrink([false, true])
                .show(ui, |ui| match &self.entries {
                    None => {
                        ui.label("Reading the folder…");
                    }
                    Some(Err(e)) => {
                        ui.label(RichText::new(e).color(ui.visuals().error_fg_color));
                    }
                    Some(Ok(entries)) if entries.is_empty() => {
                        ui.label(RichText::new("Nothing here.").weak());
                    }
                    Some(Ok(entries)) => {
                        for (name, is_dir) in entries {
                            let text = if *is_dir {
                                format!("🗀 {name}")
                            } else {
                                format!("📄 {name}")
                            };
                            let response =
                                ui.selectable_label(self.selected.as_ref() == Some(name), text);
                            if response.clicked() {
                                self.selected = Some(name.clone());
                            }
                            if response.double_clicked() {
                                if *is_dir {
                                    go_to = Some(self.dir.join(name));
                                } else {
                                    answer = Some(Some(self.dir.join(name)));
                                }
                            }
                        }
                    }
                });
            let chosen = match (&self.selected, self.kind.wants_folder()) {
                (Some(name), _) => Some(self.dir.join(name)),
                (None, true) => Some(self.dir.clone()),
                (None, false) => None,
            };
            ui.label(
                RichText::new(match &chosen {
                    Some(path) => format!("Chooses {}", path.display()),
                    None => "Select a file.".into(),
                })
                .small()
                .weak(),
            );
            ui.separator();
            ui.horizontal(|ui| {
                let choose = ui.add_enabled(chosen.is_some(), egui::Button::new("Choose"));
                if choose.clicked() {
                    // A file where a folder is wanted (or the reverse) is refused by the form.
                    answer = Some(chosen.clone());
                }
                if ui.button("Cancel").clicked() {
                    answer = Some(None);
                }
            });
        });
        if modal.should_close() && answer.is_none() {
            answer = Some(None);
        }
        if let Some(dir) = go_to {
            self.read(dir);
        }
        answer
    }
}

/// The entries of `dir`, folders first, then by name; hidden ones (".name") left out.
fn list_folder(dir: &Path, folders_only: bool) -> Listing {
    let read = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut entries: Vec<(String, bool)> = read
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Follows links: a link to a folder is a folder to the user.
            let is_dir = entry.path().is_dir();
            (!name.starts_with('.') && (is_dir || !folders_only)).then_some((name, is_dir))
        })
        .take(PICKER_ENTRIES)
        .collect();
    entries.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.to_lowercase().cmp(&b.0.to_lowercase()))
    });
    Ok(entries)
}

#[derive(Clone, Debug)]
pub struct DownloadForm {
    pub urls: String,
    pub folder: String,
    pub name: String,
    pub priority: Priority,
    /// `OFFSET:LENGTH` pairs, comma-separated; only with a single URL.
    pub ranges: String,
    /// `sha-256=HEX` (or sha-512, sha-1, md5) the file must have; only with a single URL.
    pub checksum: String,
    /// A checksums file (SHA256SUMS…) for every file of the job, instead.
    pub checksums_url: String,
    /// Resume the job at once (BITS creates jobs SUSPENDED; a click on Download means "go").
    pub start: bool,
    /// The service completes the job once transferred: the file simply appears at its name.
    pub complete_when_transferred: bool,
    pub error: Option<String>,
    pub busy: bool,
    /// The URL field takes the keyboard when the dialog opens.
    focus_urls: bool,
    /// The service refused a name that is taken: the form offers Rename and Replace.
    pub conflict: bool,
    /// The answer to a conflict: a free "name (1).ext", or replace what is there.
    pub rename_existing: bool,
    pub replace_existing: bool,
    /// Connections per file; `None`: the config's default for the priority.
    pub connections: Option<u32>,
    /// How many of the files download at once.
    pub parallel_files: u32,
    /// The job's own speed limit.
    pub limit_rate: Option<crate::job::Rate>,
}

impl DownloadForm {
    pub fn new(urls: String, folder: &Path) -> DownloadForm {
        DownloadForm {
            urls,
            folder: folder.display().to_string(),
            name: String::new(),
            priority: Priority::Normal,
            ranges: String::new(),
            checksum: String::new(),
            checksums_url: String::new(),
            start: true,
            complete_when_transferred: true,
            error: None,
            busy: false,
            focus_urls: true,
            conflict: false,
            rename_existing: false,
            replace_existing: false,
            connections: None,
            parallel_files: 1,
            limit_rate: None,
        }
    }

    /// Appends URLs (one per line) to the ones in the form.
    pub fn add_urls(&mut self, urls: &str) {
        if !self.urls.trim().is_empty() && !self.urls.ends_with('\n') {
            self.urls.push('\n');
        }
        self.urls.push_str(urls);
    }

    /// Appends the URLs of a list file (one per line; `#` starts a comment).
    fn import(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let urls: Vec<&str> = url_lines(&text).collect();
                if urls.is_empty() {
                    self.error = Some(format!("{} has no URL in it", path.display()));
                    return;
                }
                if !self.urls.trim().is_empty() && !self.urls.ends_with('\n') {
                    self.urls.push('\n');
                }
                self.urls.push_str(&urls.join("\n"));
                self.error = None;
            }
            Err(e) => self.error = Some(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The job this form describes, or what to fix.
    pub fn spec(&self) -> Result<JobSpec, String> {
        let urls: Vec<&str> = url_lines(&self.urls).collect();
        if urls.is_empty() {
            return Err("Paste at least one URL (http:// or https://), one per line.".into());
        }
        let folder = PathBuf::from(self.folder.trim());
        if !folder.is_absolute() {
            return Err(format!(
                "The destination folder “{}” is not an absolute path: choose one with Browse…",
                self.folder.trim()
            ));
        }
        let ranges = match self.ranges.trim() {
            "" => None,
            text if urls.len() == 1 => {
                Some(FileRange::parse_list(text).map_err(|e| format!("Ranges: {}", e.message))?)
            }
            _ => {
                return Err(
                    "Ranges apply to one file: give a single URL, or clear the ranges.".into(),
                );
            }
        };
        let checksums_url = match self.checksums_url.trim() {
            "" => None,
            _ if !self.checksum.trim().is_empty() => {
                return Err(
                    "Give a checksum or a checksums file, not both: the file gives every \
                     file's digest."
                        .into(),
                );
            }
            url => Some(url.to_string()),
        };
        let checksum = match self.checksum.trim() {
            "" => None,
            text if urls.len() == 1 => Some(
                crate::job::checksum::Checksum::parse(text)
                    .map_err(|e| format!("Checksum: {}", e.message))?,
            ),
            _ => {
                return Err(
                    "A checksum is one file's: give a single URL, or clear the checksum.".into(),
                );
            }
        };
        let mut files: Vec<NewFile> = Vec::with_capacity(urls.len());
        for url in &urls {
            let name = crate::job::file_name_for_url(url)?;
            let local_path = folder.join(name);
            if let Some(other) = files.iter().find(|f| f.local_path == local_path) {
                return Err(format!(
                    "{} and {url} would both be saved as {}: put them in separate jobs",
                    other.remote_url,
                    local_path.display()
                ));
            }
            files.push(NewFile {
                remote_url: url.to_string(),
                local_path,
                ranges: ranges.clone(),
                checksum: checksum.clone(),
            });
        }
        let name = match self.name.trim() {
            "" => {
                let first = files[0]
                    .local_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match files.len() {
                    1 => first,
                    n => format!("{first} (+{} more)", n - 1),
                }
            }
            name => name.to_string(),
        };
        let mut spec = JobSpec::new(&name, JobType::Download);
        spec.priority = Some(self.priority);
        spec.files = files;
        spec.complete_when_transferred = self.complete_when_transferred;
        spec.rename_existing = self.rename_existing;
        spec.replace_existing = self.replace_existing;
        spec.connections = self.connections;
        spec.parallel_files = (self.parallel_files > 1).then_some(self.parallel_files);
        spec.limit_rate = self.limit_rate;
        spec.checksums_url = checksums_url;
        Ok(spec)
    }
}

fn url_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[derive(Clone, Debug)]
pub struct UploadForm {
    pub local: String,
    pub url: String,
    pub reply: bool,
    /// Upload-reply: where Complete puts the reply; empty = beside the local file.
    pub reply_file: String,
    pub name: String,
    pub start: bool,
    pub priority: Priority,
    pub error: Option<String>,
    pub busy: bool,
}

impl UploadForm {
    pub fn new(local: Option<PathBuf>) -> UploadForm {
        UploadForm {
            local: local.map(|p| p.display().to_string()).unwrap_or_default(),
            url: String::new(),
            reply: false,
            reply_file: String::new(),
            name: String::new(),
            start: true,
            priority: Priority::Normal,
            error: None,
            busy: false,
        }
    }

    pub fn spec(&self) -> Result<JobSpec, String> {
        let local = PathBuf::from(self.local.trim());
        if !local.is_absolute() {
            return Err("Choose the file to upload (Browse…).".into());
        }
        let url = self.url.trim();
        if url.is_empty() {
            return Err("Give the URL of the BITS upload server.".into());
        }
        let job_type = if self.reply {
            JobType::UploadReply
        } else {
            JobType::Upload
        };
        let name = match self.name.trim() {
            "" => local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "upload".into()),
            name => name.to_string(),
        };
        // The service checks the file to send and the reply file, and its refusal is shown here.
        let reply_file = match self.reply_file.trim() {
            "" => None,
            _ if !self.reply => None,
            text => Some(PathBuf::from(text)),
        };
        let mut spec = JobSpec::new(&name, job_type);
        spec.priority = Some(self.priority);
        spec.files = vec![NewFile {
            remote_url: url.to_string(),
            local_path: local,
            ranges: None,
            checksum: None,
        }];
        spec.reply_file = reply_file;
        Ok(spec)
    }
}

fn submit_download(app: &mut FerryApp, form: &mut DownloadForm) {
    match form.spec() {
        Ok(spec) => {
            form.busy = true;
            form.error = None;
            form.conflict = false;
            app.send(Request::Create {
                spec,
                start: form.start,
            });
        }
        Err(e) => form.error = Some(e),
    }
}

fn priority_combo(ui: &mut egui::Ui, id: &str, priority: &mut Priority) {
    egui::ComboBox::new(id, "Priority")
        .selected_text(priority.name())
        .show_ui(ui, |ui| {
            for p in Priority::ALL {
                ui.selectable_value(priority, p, p.name());
            }
        });
}

fn error_line(ui: &mut egui::Ui, error: &Option<String>) {
    if let Some(error) = error {
        ui.label(RichText::new(error).color(ui.visuals().error_fg_color));
    }
}

/// Draws the open dialog, if any, and carries out what its buttons ask.
pub fn show(app: &mut FerryApp, ctx: &egui::Context) {
    let Some(mut dialog) = app.dialog.take() else {
        return;
    };
    let mut keep = true;
    let mut pick = None;
    let modal = Modal::new(Id::unique("ferry-dialog")).show(ctx, |ui| {
        // Narrower than the window, whatever its size.
        ui.set_width((ctx.content_rect().width() - 60.0).clamp(280.0, 560.0));
        match &mut dialog {
            Dialog::NewDownload(form) => {
                ui.heading("New download");
                let label = ui.label("URLs, one per line:");
                // Enter submits; it is taken before the field would turn it into a new line.
                let submit = ui.input_mut(|i| {
                    !i.modifiers.shift && i.consume_key(egui::Modifiers::NONE, egui::Key::Enter)
                }) && !form.busy;
                let urls = egui::TextEdit::multiline(&mut form.urls)
                    .desired_rows(4)
                    .desired_width(f32::INFINITY)
                    .hint_text("https://example.org/file.iso");
                let urls = ui.add(urls).labelled_by(label.id);
                if std::mem::take(&mut form.focus_urls) {
                    urls.request_focus();
                }
                ui.label(
                    RichText::new("Enter creates the download; Shift+Enter starts a new line.")
                        .small()
                        .weak(),
                );
                if submit {
                    submit_download(app, form);
                }
                egui::Grid::new("download-form")
                    .num_columns(2)
                    .show(ui, |ui| {
                        let label = ui.label("Folder");
                        ui.horizontal(|ui| {
                            ui.add(
                                egui::TextEdit::singleline(&mut form.folder).desired_width(360.0),
                            )
                            .labelled_by(label.id);
                            if ui.button("Browse…").clicked() {
                                pick =
                                    Some((PickKind::DownloadFolder, PathBuf::from(&form.folder)));
                            }
                        });
                        ui.end_row();
                        let label = ui.label("Name");
                        ui.add(
                            egui::TextEdit::singleline(&mut form.name)
                                .hint_text("from the first file")
                                .desired_width(360.0),
                        )
                        .labelled_by(label.id);
                        ui.end_row();
                        let label = ui.label("Ranges");
                        ui.add(
                            egui::TextEdit::singleline(&mut form.ranges)
                                .hint_text("optional: OFFSET:LENGTH,… (one URL only)")
                                .desired_width(360.0),
                        )
                        .labelled_by(label.id);
                        ui.end_row();
                        let label = ui.label("Checksum");
                        ui.add(
                            egui::TextEdit::singleline(&mut form.checksum)
                                .hint_text("optional: sha-256=HEX (one URL only)")
                                .desired_width(360.0),
                        )
                        .labelled_by(label.id)
                        .on_hover_text(
                            "The digest the file must have (sha-256, sha-512, sha-1 or md5). A \
                             file that does not match is not kept: the job stops in ERROR and \
                             downloads it again on Resume.",
                        );
                        ui.end_row();
                        let label = ui.label("Checksums file");
                        ui.add(
                            egui::TextEdit::singleline(&mut form.checksums_url)
                                .hint_text("optional: URL of SHA256SUMS, for every file")
                                .desired_width(360.0),
                        )
                        .labelled_by(label.id)
                        .on_hover_text(
                            "A SHA256SUMS, SHA512SUMS or MD5SUMS file (or BSD-style lines) that \
                             lists every file of the job by name; it is fetched when the job is \
                             created, and a file it does not list is refused.",
                        );
                        ui.end_row();
                    });
                ui.horizontal_wrapped(|ui| {
                    priority_combo(ui, "download-priority", &mut form.priority);
                    ui.checkbox(&mut form.start, "Start now");
                    super::jobs_view::connections_menu(
                        ui,
                        "download-connections",
                        "Connections",
                        &mut form.connections,
                    );
                    super::jobs_view::files_at_once_menu(
                        ui,
                        "download-parallel",
                        &mut form.parallel_files,
                    );
                    super::jobs_view::limit_menu(
                        ui,
                        "download-limit",
                        "Speed limit",
                        &mut form.limit_rate,
                        "This job's speed limit, on top of the global limits (Settings); \
                         changeable later in its details.",
                    );
                    ui.checkbox(
                        &mut form.complete_when_transferred,
                        "Complete when transferred",
                    )
                    .on_hover_text(
                        "The files are moved to their names as soon as every byte is here. \
                             Off: the job waits in TRANSFERRED for Complete (the BITS way).",
                    );
                    if ui.button("Import URL list…").clicked() {
                        pick = Some((PickKind::UrlList, PathBuf::from(&form.folder)));
                    }
                });
                error_line(ui, &form.error);
                if form.conflict && !form.busy {
                    ui.horizontal_wrapped(|ui| {
                        ui.label("A file of that name is there already:");
                        if ui
                            .button("Rename")
                            .on_hover_text("Save as the first free “name (1).ext”")
                            .clicked()
                        {
                            form.rename_existing = true;
                            form.replace_existing = false;
                            submit_download(app, form);
                        }
                        if ui
                            .button("Replace")
                            .on_hover_text("Complete replaces the file that is there")
                            .clicked()
                        {
                            form.replace_existing = true;
                            form.rename_existing = false;
                            submit_download(app, form);
                        }
                    });
                }
                ui.separator();
                ui.horizontal(|ui| {
                    let create = ui.add_enabled(!form.busy, egui::Button::new("Create download"));
                    if create.clicked() {
                        submit_download(app, form);
                    }
                    if ui.button("Close").clicked() {
                        keep = false;
                    }
                });
            }
            Dialog::NewUpload(form) => {
                ui.heading("New upload");
                ui.label(
                    "Uploads use the BITS upload protocol: the server must be IIS with the BITS \
                     extension, or ferry serve.",
                );
                egui::Grid::new("upload-form")
                    .num_columns(2)
                    .show(ui, |ui| {
                        let label = ui.label("Local file");
                        ui.horizontal(|ui| {
                            ui.add(
                                egui::TextEdit::singleline(&mut form.local).desired_width(360.0),
                            )
                            .labelled_by(label.id);
                            if ui.button("Browse…").clicked() {
                                pick = Some((PickKind::UploadFile, PathBuf::from(&form.local)));
                            }
                        });
                        ui.end_row();
                        let label = ui.label("Server URL");
                        ui.add(egui::TextEdit::singleline(&mut form.url).desired_width(360.0))
                            .labelled_by(label.id);
                        ui.end_row();
                        let label = ui.label("Name");
                        ui.add(egui::TextEdit::singleline(&mut form.name).desired_width(360.0))
                            .labelled_by(label.id);
                        ui.end_row();
                        if form.reply {
                            let label = ui.label("Reply file");
                            ui.add(
                                egui::TextEdit::singleline(&mut form.reply_file)
                                    .hint_text("beside the local file")
                                    .desired_width(360.0),
                            )
                            .labelled_by(label.id);
                            ui.end_row();
                        }
                    });
                ui.horizontal(|ui| {
                    priority_combo(ui, "upload-priority", &mut form.priority);
                    ui.checkbox(&mut form.start, "Start now");
                    ui.checkbox(&mut form.reply, "The server sends a reply (upload-reply)");
                });
                error_line(ui, &form.error);
                ui.separator();
                ui.horizontal(|ui| {
                    let create = ui.add_enabled(!form.busy, egui::Button::new("Create upload"));
                    if create.clicked() {
                        match form.spec() {
                            Ok(spec) => {
                                form.busy = true;
                                form.error = None;
                                let start = form.start;
                                app.send(Request::Create { spec, start });
                            }
                            Err(e) => form.error = Some(e),
                        }
                    }
                    if ui.button("Close").clicked() {
                        keep = false;
                    }
                });
            }
            Dialog::EditUrl {
                id,
                file,
                url,
                error,
            } => {
                ui.heading("Edit URL");
                ui.label(
                    "The file is downloaded from this address from now on; what is already \
                     downloaded is kept when the new server has the same file.",
                );
                let label = ui.label("URL");
                let field = ui
                    .add(egui::TextEdit::singleline(url).desired_width(f32::INFINITY))
                    .labelled_by(label.id);
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                error_line(ui, error);
                ui.separator();
                ui.horizontal(|ui| {
                    if ui.button("Save and retry").clicked() || enter {
                        match crate::job::check_remote_url(url.trim()) {
                            Ok(()) => {
                                // In order: the new URL first, then the retry.
                                app.send(Request::InOrder(vec![
                                    Request::Set(
                                        vec![*id],
                                        crate::job::PropertyChange::RemoteName {
                                            file: *file,
                                            url: url.trim().to_string(),
                                        },
                                    ),
                                    Request::Act(Action::Resume, vec![*id]),
                                ]));
                                keep = false;
                            }
                            Err(e) => *error = Some(e.message),
                        }
                    }
                    if ui.button("Close").clicked() {
                        keep = false;
                    }
                });
            }
            Dialog::Confirm {
                action,
                ids,
                text,
                skipped,
            } => {
                ui.heading(match (&*action, ids.len()) {
                    (Action::Complete, _) => "Complete with files missing?".to_string(),
                    (_, 1) => "Cancel this job?".to_string(),
                    (_, n) => format!("Cancel {n} jobs?"),
                });
                ui.add(egui::Label::new(RichText::new(&text.summary).strong()).wrap());
                // However many jobs: the list scrolls and the buttons stay on screen.
                let room = (ctx.content_rect().height() - 260.0).max(80.0);
                egui::ScrollArea::vertical()
                    .max_height(room)
                    .auto_shrink([false, true])
                    .show(ui, |ui| {
                        for line in text.lines.iter().take(rules::LISTED) {
                            ui.add(egui::Label::new(line.as_str()).wrap());
                        }
                        if text.lines.len() > rules::LISTED {
                            ui.label(
                                RichText::new(format!(
                                    "… and {} more",
                                    text.lines.len() - rules::LISTED
                                ))
                                .weak(),
                            );
                        }
                        if let Some(skipped) = skipped {
                            ui.separator();
                            ui.add(egui::Label::new(RichText::new(skipped.as_str()).weak()).wrap());
                        }
                    });
                ui.label(&text.footer);
                ui.separator();
                ui.horizontal(|ui| {
                    let (yes, no) = match action {
                        Action::Complete => ("Complete anyway", "Go back"),
                        _ => ("Cancel jobs", "Keep jobs"),
                    };
                    if ui.button(yes).clicked() {
                        app.act(*action, ids.clone());
                        keep = false;
                    }
                    if ui.button(no).clicked() {
                        keep = false;
                    }
                });
            }
        }
    });
    if modal.should_close() {
        keep = false;
    }
    if let Some((kind, start)) = pick {
        app.pick(kind, &start, ctx);
    }
    if keep && app.dialog.is_none() {
        app.dialog = Some(dialog);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_form_builds_the_job() {
        let mut form = DownloadForm::new(
            "# nightly\nhttp://127.0.0.1/a.iso\n\n  http://127.0.0.1/b%20c.bin \n".into(),
            Path::new("/data"),
        );
        let spec = form.spec().expect("valid");
        assert_eq!(spec.name, "a.iso (+1 more)");
        assert_eq!(
            (spec.connections, spec.parallel_files),
            (None, None),
            "the defaults"
        );
        form.connections = Some(16);
        form.parallel_files = 2;
        let chosen = form.spec().expect("valid");
        assert_eq!(
            (chosen.connections, chosen.parallel_files),
            (Some(16), Some(2))
        );
        assert_eq!(spec.files.len(), 2);
        assert_eq!(spec.files[1].local_path, Path::new("/data/b c.bin"));
        form.ranges = "0:10".into();
        assert!(
            form.spec()
                .expect_err("ranges with two URLs")
                .contains("single URL")
        );
        form.urls = "http://127.0.0.1/a.iso".into();
        assert_eq!(
            form.spec().expect("one URL").files[0]
                .ranges
                .as_ref()
                .map(Vec::len),
            Some(1)
        );
        form.checksum = format!("sha-256={}", "ab".repeat(32));
        assert_eq!(
            form.spec().expect("a checksum").files[0]
                .checksum
                .as_ref()
                .map(ToString::to_string),
            Some(format!("sha-256={}", "ab".repeat(32)))
        );
        form.checksum = "sha-256=abc".into();
        assert!(form.spec().expect_err("short").contains("64 hex digits"));
        form.ranges.clear();
        form.urls = "http://127.0.0.1/a.iso\nhttp://127.0.0.1/b.iso".into();
        form.checksum = format!("md5={}", "0".repeat(32));
        assert!(
            form.spec()
                .expect_err("two URLs")
                .contains("A checksum is one file's")
        );
        form.checksum.clear();
        form.checksums_url = "http://127.0.0.1/SHA256SUMS".into();
        assert_eq!(
            form.spec()
                .expect("a list for two files")
                .checksums_url
                .as_deref(),
            Some("http://127.0.0.1/SHA256SUMS")
        );
        form.checksum = format!("md5={}", "0".repeat(32));
        assert!(form.spec().expect_err("both").contains("not both"));
        form.checksum.clear();
        form.checksums_url.clear();
        form.urls = "http://127.0.0.1/a.iso".into();
        form.folder = "relative".into();
        assert!(form.spec().expect_err("relative").contains("absolute"));
        form.urls = "\n# only a comment\n".into();
        assert!(form.spec().expect_err("empty").contains("at least one URL"));
    }
}
