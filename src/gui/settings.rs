//! The GUI's own settings (`gui.ron` beside `config.ron` in the config directory). The service's
//! limits and timeouts live in its config file and are edited through the service (Settings page).

use super::model::Column;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuiSettings {
    /// Where new downloads go unless the dialog says otherwise.
    pub default_folder: PathBuf,
    /// Desktop notifications (the in-app toasts always show).
    pub notifications: bool,
    /// Closing the window hides it in the tray (when there is a tray).
    pub close_to_tray: bool,
    pub theme: Theme,
    /// The Stale view lists jobs with no activity for this many days.
    pub stale_after_days: u32,
    /// How the window was left: size, panel, sort and filter. Written by the window itself.
    pub layout: Layout,
}

/// The window as the user left it, restored at the next start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Layout {
    /// The window's inner size in points.
    pub window_size: Option<[f32; 2]>,
    /// The details panel's width in points.
    pub details_width: f32,
    pub sort: Column,
    pub ascending: bool,
    /// The filter text and the states shown (in `JobState::ALL` order).
    pub filter: String,
    pub states: [bool; 9],
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            window_size: None,
            details_width: Layout::DETAILS_WIDTH,
            sort: Column::Name,
            ascending: true,
            filter: String::new(),
            states: [true; 9],
        }
    }
}

impl Layout {
    pub const DETAILS_WIDTH: f32 = 340.0;
    /// The smallest window the layout is made for (the window cannot be made smaller).
    pub const MIN_WINDOW: [f32; 2] = [640.0, 420.0];
    pub const DEFAULT_WINDOW: [f32; 2] = [1280.0, 760.0];

    /// A size to open the window at: the saved one if it makes sense, else the default.
    pub fn window_size(&self) -> [f32; 2] {
        match self.window_size {
            Some([w, h])
                if w.is_finite()
                    && h.is_finite()
                    && (Layout::MIN_WINDOW[0]..=16_384.0).contains(&w)
                    && (Layout::MIN_WINDOW[1]..=16_384.0).contains(&h) =>
            {
                [w, h]
            }
            _ => Layout::DEFAULT_WINDOW,
        }
    }

    /// The saved panel width, or the default when it is not a sensible number.
    pub fn details_width(&self) -> f32 {
        if self.details_width.is_finite() && (200.0..=4000.0).contains(&self.details_width) {
            self.details_width
        } else {
            Layout::DETAILS_WIDTH
        }
    }
}

impl Default for GuiSettings {
    fn default() -> Self {
        GuiSettings {
            default_folder: default_download_folder(),
            notifications: true,
            close_to_tray: true,
            theme: Theme::System,
            stale_after_days: 7,
            layout: Layout::default(),
        }
    }
}

fn default_download_folder() -> PathBuf {
    directories::UserDirs::new()
        .and_then(|dirs| {
            dirs.download_dir()
                .map(Path::to_path_buf)
                .or_else(|| Some(dirs.home_dir().join("Downloads")))
        })
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

impl GuiSettings {
    pub const FILE_NAME: &'static str = "gui.ron";

    /// Reads `path`; a missing file gives the defaults, a damaged one the defaults and a message.
    pub fn load(path: &Path) -> (GuiSettings, Option<String>) {
        match std::fs::read_to_string(path) {
            Ok(text) => match ron::from_str(&text) {
                Ok(settings) => (settings, None),
                Err(e) => (
                    GuiSettings::default(),
                    Some(format!(
                        "the GUI settings in {} are invalid ({e}); using the defaults until you save",
                        path.display()
                    )),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (GuiSettings::default(), None),
            Err(e) => (
                GuiSettings::default(),
                Some(format!("cannot read {}: {e}", path.display())),
            ),
        }
    }

    /// Writes `path` whole or not at all (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        crate::store::write_atomically(path, self.text()?.as_bytes())
            .map_err(|e| format!("cannot save {}: {e}", path.display()))
    }

    /// The file's text.
    pub fn text(&self) -> Result<String, String> {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .map_err(|e| e.to_string())
    }

    /// Checks what the form lets a user type.
    pub fn validate(&self) -> Result<(), String> {
        if !self.default_folder.is_absolute() {
            return Err(format!(
                "the default folder {} is not an absolute path: choose a folder with Browse…",
                self.default_folder.display()
            ));
        }
        if self.stale_after_days == 0 {
            return Err("“Stale after” must be at least 1 day".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_damage_is_reported() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(GuiSettings::FILE_NAME);
        assert_eq!(GuiSettings::load(&path), (GuiSettings::default(), None));
        let settings = GuiSettings {
            default_folder: "/srv/incoming".into(),
            notifications: false,
            close_to_tray: false,
            theme: Theme::Dark,
            stale_after_days: 3,
            layout: Layout {
                window_size: Some([900.0, 600.0]),
                details_width: 300.0,
                sort: Column::ExpiresIn,
                ascending: false,
                filter: "iso".into(),
                states: [false; 9],
            },
        };
        settings.save(&path).expect("save");
        assert_eq!(GuiSettings::load(&path), (settings.clone(), None));
        std::fs::write(&path, "(theme: Purple)").expect("damage");
        let (loaded, message) = GuiSettings::load(&path);
        assert_eq!(loaded, GuiSettings::default());
        assert!(message.expect("reported").contains("invalid"));
        let relative = GuiSettings {
            default_folder: "downloads".into(),
            ..settings
        };
        assert!(
            relative
                .validate()
                .expect_err("relative")
                .contains("absolute")
        );
    }
}
