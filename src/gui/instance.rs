//! One window per user session: the first `ferry gui` owns a name on the session bus; a second
//! launch finds it taken, asks the running window to come forward (handing it the URLs of its
//! command line) and exits. Without a session bus there is no way to find the first window, so
//! each launch opens its own (logged).

use std::sync::mpsc;

/// The bus name and object of the running window.
pub const BUS_NAME: &str = "io.github.ferry.Gui";
const PATH: &str = "/io/github/ferry/Gui";
const INTERFACE: &str = "io.github.ferry.Gui1";

/// What a second launch asks of the first window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// URLs to open in a new download ("ferry gui URL…"); may be empty.
    pub urls: Vec<String>,
}

/// The running window's side: keep it alive as long as the window (dropping it frees the name).
pub struct Instance {
    _connection: zbus::blocking::Connection,
}

pub enum Claim {
    /// This process is the window; activations from later launches arrive on the receiver.
    First(Instance, mpsc::Receiver<Activation>),
    /// Another window runs and was asked to come forward.
    Raised,
}

struct Window {
    tx: mpsc::Sender<Activation>,
    wake: Box<dyn Fn() + Send + Sync>,
}

#[zbus::interface(name = "io.github.ferry.Gui1")]
impl Window {
    /// Bring the window forward; open a new download of `urls` when there are any.
    fn activate(&self, urls: Vec<String>) {
        // Only text that looks like a URL list is taken: at most 1000 lines, 64 KiB in all.
        let mut total = 0;
        let urls: Vec<String> = urls
            .into_iter()
            .take(1000)
            .filter(|u| {
                total += u.len();
                total <= 64 * 1024 && !u.trim().is_empty()
            })
            .collect();
        if self.tx.send(Activation { urls }).is_ok() {
            (self.wake)();
        }
    }
}

/// Claims the window for this process on `connection`'s bus, or raises the one that has it.
/// `wake` is called (on a bus thread) after an activation is queued.
fn claim(
    connection: zbus::blocking::Connection,
    urls: &[String],
    wake: impl Fn() + Send + Sync + 'static,
) -> zbus::Result<Claim> {
    let (tx, rx) = mpsc::channel();
    // The object first: a second launch that sees the name can call it at once.
    connection.object_server().at(
        PATH,
        Window {
            tx,
            wake: Box::new(wake),
        },
    )?;
    // zbus reports a name another peer owns as `NameTaken` (DoNotQueue: no waiting in line).
    match connection
        .request_name_with_flags(BUS_NAME, zbus::fdo::RequestNameFlags::DoNotQueue.into())
    {
        Ok(
            zbus::fdo::RequestNameReply::PrimaryOwner | zbus::fdo::RequestNameReply::AlreadyOwner,
        ) => {
            return Ok(Claim::First(
                Instance {
                    _connection: connection,
                },
                rx,
            ));
        }
        Ok(_) | Err(zbus::Error::NameTaken) => {}
        Err(e) => return Err(e),
    }
    connection.call_method(
        Some(BUS_NAME),
        PATH,
        Some(INTERFACE),
        "Activate",
        &(urls.to_vec(),),
    )?;
    Ok(Claim::Raised)
}

/// [`claim`] on the bus at `address` (a D-Bus address, as in DBUS_SESSION_BUS_ADDRESS).
pub fn claim_on_bus(
    address: &str,
    urls: &[String],
    wake: impl Fn() + Send + Sync + 'static,
) -> Result<Claim, String> {
    zbus::blocking::connection::Builder::address(address)
        .and_then(|b| b.build())
        .and_then(|c| claim(c, urls, wake))
        .map_err(|e| e.to_string())
}

/// [`claim`] on the session bus; `None` when there is none (each launch is then its own window).
pub fn claim_session(urls: &[String], wake: impl Fn() + Send + Sync + 'static) -> Option<Claim> {
    let claimed = zbus::blocking::Connection::session().and_then(|c| claim(c, urls, wake));
    match claimed {
        Ok(claim) => Some(claim),
        Err(e) => {
            tracing::warn!(
                "no single-window check ({e}): without a session bus each `ferry gui` opens a window"
            );
            None
        }
    }
}
