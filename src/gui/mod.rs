//! The desktop GUI (eframe/egui): a client of the service like the CLI. It renders the latest
//! copy of the jobs each frame and sends requests; it never owns job data, touches job files or
//! speaks HTTP to servers. Closing it never stops a transfer.

mod app;
mod bridge;
mod desktop;
mod dialogs;
pub mod format;
pub mod model;
pub mod rules;
mod settings;
mod toasts;
mod tray;
mod view;

pub use app::{Connection, FerryApp, GuiOptions, NativePickers, Page, PickKind, Pickers};
pub use bridge::Connect;
pub use settings::{GuiSettings, Theme};
pub use view::state_look;

/// Opens the window and runs until it closes (the service keeps running).
pub fn run(options: GuiOptions) -> Result<(), String> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Ferry")
            .with_app_id("ferry")
            .with_inner_size([1280.0, 760.0])
            .with_min_inner_size([720.0, 400.0])
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
