//! The colours of the window, in one place: levels of toasts, states of jobs, progress and the
//! speed graph. Chosen to read on both the light and the dark theme.

use egui::Color32;

pub const SUCCESS: Color32 = Color32::from_rgb(60, 170, 90);
pub const WARNING: Color32 = Color32::from_rgb(230, 160, 40);
pub const ERROR: Color32 = Color32::from_rgb(220, 70, 60);

/// The fill of progress bars. Not egui's default (the selection colour), which would vanish
/// on a selected row.
pub const PROGRESS: Color32 = Color32::from_rgb(70, 150, 90);
/// The speed graph's line.
pub const SPEED_LINE: Color32 = Color32::from_rgb(60, 130, 220);

pub const QUEUED: Color32 = Color32::from_rgb(120, 140, 170);
pub const CONNECTING: Color32 = Color32::from_rgb(90, 170, 230);
pub const TRANSFERRING: Color32 = Color32::from_rgb(50, 130, 240);
pub const SUSPENDED: Color32 = Color32::from_rgb(150, 150, 150);
pub const FAILED: Color32 = Color32::from_rgb(220, 60, 50);
pub const TRANSIENT: Color32 = Color32::from_rgb(230, 150, 30);
pub const TRANSFERRED: Color32 = Color32::from_rgb(60, 170, 80);
pub const ACKNOWLEDGED: Color32 = Color32::from_rgb(40, 120, 60);
pub const CANCELLED: Color32 = Color32::from_rgb(110, 110, 110);
