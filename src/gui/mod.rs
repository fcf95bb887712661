//! The desktop GUI (eframe/egui): a client of the service like the CLI. It renders the latest
//! copy of the jobs each frame and sends requests; it never owns job data, touches job files or
//! speaks HTTP to servers. Closing it never stops a transfer.

mod app;
mod bridge;
mod desktop;
mod dialogs;
pub mod format;
pub mod instance;
pub mod jobs_view;
pub mod model;
pub mod notices;
pub mod rules;
mod saver;
mod settings;
mod theme;
mod toasts;
mod tray;
mod view;

pub use app::{Connection, FerryApp, GuiOptions, NativePickers, Page, PickKind, Pickers};
pub use bridge::{Action, Connect, Request};
pub use jobs_view::{Command, JobsView, state_look, visible_columns};
pub use settings::{GuiSettings, Layout, Theme};
pub use view::history_table;

/// Opens the window and runs until it closes (the service keeps running). When a window is
/// open already, brings it forward with `urls` instead and returns.
pub fn run(mut options: GuiOptions, urls: Vec<String>) -> Result<(), String> {
    let wake = options.wake.clone();
    let _instance = match options
        .system_integration
        .then(|| {
            instance::claim_session(&urls, move || {
                if let Some(ctx) = wake.get() {
                    ctx.request_repaint();
                }
            })
        })
        .flatten()
    {
        Some(instance::Claim::Raised) => {
            println!("Ferry's window is open already: it was brought forward.");
            return Ok(());
        }
        Some(instance::Claim::First(instance, activations)) => {
            options.activations = Some(activations);
            Some(instance)
        }
        None => None,
    };
    options.urls = urls;
    let size = options
        .settings_path
        .as_deref()
        .map(|path| GuiSettings::load(path).0.layout.window_size())
        .unwrap_or(Layout::DEFAULT_WINDOW);
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Ferry")
            .with_app_id("ferry")
            .with_inner_size(size)
            .with_min_inner_size(Layout::MIN_WINDOW)
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "Ferry",
        native,
        Box::new(|cc| Ok(Box::new(FerryApp::new(cc, options)))),
    )
    .map_err(|e| format!("cannot open the window: {e}"))
}
