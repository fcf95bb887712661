//! Network connectivity (spec T14/T15). The engine watches the network interfaces: when none but
//! loopback is up, jobs wait in TRANSIENT_ERROR with BG_E_NETWORK_DISCONNECTED instead of burning
//! retries, and when one comes back they are queued at once.
//!
//! The test is deliberately loose: any interface other than `lo` that is up (or whose state the
//! driver does not report, as for tunnels) counts as a network. A false "present" only means the
//! ordinary retry timer applies; a false "absent" would stall jobs that could run.

use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the interfaces are looked at: a read of a few tiny sysfs files.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Whether `net_dir` (normally `/sys/class/net`) shows an interface other than loopback that is up.
/// `None` when the directory cannot be read (not Linux): then the network counts as present.
pub(crate) fn network_present(net_dir: &Path) -> Option<bool> {
    let entries = std::fs::read_dir(net_dir).ok()?;
    let present = entries.filter_map(|e| e.ok()).any(|entry| {
        let name = entry.file_name();
        if name == "lo" {
            return false;
        }
        let state = std::fs::read_to_string(entry.path().join("operstate")).unwrap_or_default();
        matches!(state.trim(), "up" | "unknown")
    });
    Some(present)
}

/// Reports connectivity changes until the engine is gone.
pub(crate) async fn watch(commands: mpsc::WeakSender<super::handle::Command>) {
    let mut last = true;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    loop {
        ticker.tick().await;
        let Some(up) = network_present(Path::new("/sys/class/net")) else {
            return;
        };
        if up == last {
            continue;
        }
        // A weak sender: the watcher alone does not keep the engine alive.
        let Some(sender) = commands.upgrade() else {
            return;
        };
        if super::handle::call(&sender, |reply| super::handle::Command::Network {
            up,
            reply,
        })
        .await
        .is_err()
        {
            return;
        }

        tracing::info!(up, "network connectivity changed");
        last = up;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(dir: &Path, name: &str, state: &str) {
        std::fs::create_dir_all(dir.join(name)).expect("dir");
        std::fs::write(dir.join(name).join("operstate"), format!("{state}\n")).expect("write");
    }

    #[test]
    fn an_interface_other_than_loopback_must_be_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        interface(dir.path(), "lo", "unknown");
        interface(dir.path(), "eth0", "down");
        assert_eq!(network_present(dir.path()), Some(false));
        interface(dir.path(), "tun0", "unknown");
        assert_eq!(network_present(dir.path()), Some(true));
        interface(dir.path(), "tun0", "down");
        interface(dir.path(), "wlan0", "up");
        assert_eq!(network_present(dir.path()), Some(true));
        assert_eq!(network_present(&dir.path().join("missing")), None);
    }
}
