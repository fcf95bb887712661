//! Idle bandwidth only, for background jobs (spec §5: BITS background transfers "use only idle
//! bandwidth and back off when other traffic appears, still trickling").
//!
//! Method: four times a second while background jobs move bytes (once a second otherwise) the
//! controller reads the network interfaces' byte counters (`/proc/net/dev`) and Ferry's own
//! byte counts (the global buckets count every byte Ferry moves). On the interface that carries
//! Ferry's traffic, what the counters moved over the last two seconds beyond Ferry's own bytes,
//! less a slack for how far Ferry's reads trail the bytes' arrival, is somebody else's traffic.
//! When it is more than a little (5 % of the link), the background jobs' shared bucket drops: to a trickle (2 % of the link, at least
//! 16 KiB/s) when it is more than a tenth of the link, taken for a greedy competitor such as a
//! browser's download, which takes whatever is freed; else to what the link has left beside it;
//! when it stops, the bucket doubles every sample until it no longer limits. FOREGROUND jobs
//! never pass through that bucket. Each direction (downloads: received bytes; uploads: sent
//! bytes) has its own controller.
//!
//! Limits of the method: it sees the traffic of this machine only, not another machine's on the
//! same link (BITS reads the gateway's counters over UPnP for that); the link's capacity is the
//! highest total seen lately, so until Ferry or another program has filled the link once, a
//! competitor that leaves capacity unused is not noticed; traffic on another interface than
//! Ferry's (outside a VPN tunnel, say) is not counted. LEDBAT measures queueing delay on its
//! own connections instead, which also sees other machines; the HTTP stack gives no access to
//! the sockets' round-trip times, so Ferry does not.
//!
//! The arithmetic ([`Direction::observe`]) takes the samples as arguments; the loop ([`run`])
//! reads the counters and sets the buckets.

use super::api::EngineEvent;
use super::bandwidth::Bucket;
use crate::job::Rate;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the counters are read while a background job moves bytes.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// Samples between two reminders that background jobs still give way.
const RESEND_EVERY: u32 = 20;
/// How often while none does (or the controller is switched off).
const IDLE_INTERVAL: Duration = Duration::from_secs(1);
/// Other traffic below this (bytes per second), or below [`NOTICED_SHARE`] of the link, is
/// chatter, not a competitor.
const NOTICED_MIN: f64 = 64.0 * 1024.0;
const NOTICED_SHARE: f64 = 0.05;
/// What background jobs keep while they give way: a share of the link, at least a floor.
const TRICKLE_SHARE: f64 = 0.02;
const TRICKLE_MIN: f64 = 16.0 * 1024.0;
/// Samples the traffic is summed over (two seconds): Ferry's reads come in chunks of up to
/// 400 KiB, which a single quarter of a second would take for another's traffic, and a
/// competitor that starts slowly beside a job that fills the link must add up above the slack.
const WINDOW_SAMPLES: usize = 8;
/// How far Ferry's count of its bytes may trail the interface's (a read of hyper's and what
/// waits in the socket).
const READ_SLACK: f64 = 512.0 * 1024.0;
/// Seconds of the bucket's rate a bounded range may arrive ahead of Ferry's reads (a range is a
/// second of the limit, `transfer.rs`).
const RANGE_AHEAD: f64 = 1.5;
/// Other traffic above this share of the link is taken for a greedy competitor.
const GREEDY_SHARE: f64 = 0.10;
/// The share of the link kept free beside a competitor that does not take it all.
const HEADROOM: f64 = 0.05;
/// The link's estimated capacity decays by this factor each sample (a half-life of ~1.5
/// minutes), so that a slower link (another network) is learned again.
const CAPACITY_DECAY: f64 = 0.998;
/// Headers on the wire per byte of payload (TCP/IP over Ethernet: 1514 bytes per 1448).
const WIRE_OVERHEAD: f64 = 1.05;
/// The acknowledgements the other direction sends per byte received.
const ACK_SHARE: f64 = 0.03;
/// Ferry's bytes in one sample below which the interface carrying them is not guessed again.
const OWN_MIN_FOR_INTERFACE: u64 = 16 * 1024;

/// One sample of one direction: the bytes each interface moved since the last, and Ferry's.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// (interface, bytes it moved in this direction).
    pub interfaces: Vec<(String, u64)>,
    /// Ferry's payload bytes in this direction, and in the other (its acknowledgements come
    /// this way; on loopback, which counts every packet both ways, all of it does).
    pub own: u64,
    pub own_other_way: u64,
    pub seconds: f64,
}

/// The controller of one direction.
#[derive(Clone, Debug, Default)]
pub struct Direction {
    /// The highest total rate seen on the interface lately (bytes per second).
    capacity: f64,
    /// The background bucket's rate; `None`: unlimited.
    allowed: Option<f64>,
    interface: Option<String>,
    /// The last samples: (interface bytes, Ferry's bytes on the wire, seconds).
    window: std::collections::VecDeque<(f64, f64, f64)>,
}

impl Direction {
    /// Takes one sample; returns the background jobs' rate (`None`: unlimited).
    pub fn observe(&mut self, sample: &Sample) -> Option<u64> {
        if sample.seconds <= 0.0 {
            return self.allowed.map(|a| a as u64);
        }
        if sample.own >= OWN_MIN_FOR_INTERFACE {
            // The interface whose count is closest above Ferry's own is the one carrying it.
            self.interface = sample
                .interfaces
                .iter()
                .filter(|(_, moved)| *moved as f64 >= 0.9 * sample.own as f64)
                .min_by_key(|(_, moved)| *moved)
                .map(|(name, _)| name.clone())
                .or(self.interface.take());
        }
        let Some(interface) = &self.interface else {
            return None;
        };
        let moved = |list: &[(String, u64)]| {
            list.iter()
                .find(|(name, _)| name == interface)
                .map_or(0, |(_, m)| *m) as f64
        };
        let (own, own_back) = (sample.own as f64, sample.own_other_way as f64);
        let mine = if interface == "lo" {
            // Loopback: every packet is both sent and received.
            (own + own_back) * WIRE_OVERHEAD
        } else {
            own * WIRE_OVERHEAD + own_back * ACK_SHARE
        };
        self.window
            .push_back((moved(&sample.interfaces), mine, sample.seconds));
        if self.window.len() > WINDOW_SAMPLES {
            self.window.pop_front();
        }
        let (total, mine, seconds) = self
            .window
            .iter()
            .fold((0.0, 0.0, 0.0), |(t, m, s), (t1, m1, s1)| {
                (t + t1, m + m1, s + s1)
            });
        self.capacity = (self.capacity * CAPACITY_DECAY).max(total / seconds);
        // Ferry counts its bytes as it reads them, the interface as they arrive: up to a read,
        // and under a limit up to the range asked for (a second of the limit, which the server
        // sends at once), apart. That much of a difference is not somebody else's.
        let slack = READ_SLACK + self.allowed.unwrap_or(0.0) * RANGE_AHEAD;
        let other = (total - mine - slack).max(0.0) / seconds;
        let noticed = other > NOTICED_MIN.max(NOTICED_SHARE * self.capacity);
        let trickle = TRICKLE_MIN.max(TRICKLE_SHARE * self.capacity);
        self.allowed = if noticed {
            // A competitor above a tenth of the link is taken for a greedy one (a download):
            // the jobs go straight to the trickle, since it takes whatever is freed. A smaller
            // one keeps its share and a margin (three times its share is taken off).
            let left = if other > GREEDY_SHARE * self.capacity {
                0.0
            } else {
                self.capacity - 3.0 * other - HEADROOM * self.capacity
            };
            let target = left.max(trickle);
            Some(match self.allowed {
                Some(now) if now < target => (now * 2.0).min(target),
                _ => target,
            })
        } else {
            match self.allowed {
                Some(now) if now * 2.0 < self.capacity => Some(now * 2.0),
                _ => None,
            }
        };
        self.allowed.map(|a| a as u64)
    }

    /// Whether background jobs give way now.
    pub fn yielding(&self) -> bool {
        self.allowed.is_some()
    }
}

/// The interfaces' byte counters, from `/proc/net/dev`: (name, received, sent).
pub fn parse_net_dev(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, numbers) = line.split_once(':')?;
            let fields: Vec<u64> = numbers
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            Some((name.trim().to_string(), *fields.first()?, *fields.get(8)?))
        })
        .collect()
}

/// What the controller works on: Ferry's global buckets (its own byte counts) and the
/// background jobs' buckets it sets, held weakly so that it ends with the engine.
pub(super) struct Wiring {
    pub download_total: Weak<Bucket>,
    pub upload_total: Weak<Bucket>,
    pub download_idle: Weak<Bucket>,
    pub upload_idle: Weak<Bucket>,
    pub enabled: Arc<AtomicBool>,
    pub events: super::events::EventBus,
}

fn read_counters() -> Option<Vec<(String, u64, u64)>> {
    // procfs is memory: this read does not block the runtime's thread.
    std::fs::read_to_string("/proc/net/dev")
        .ok()
        .map(|text| parse_net_dev(&text))
}

/// Bytes each interface moved in one direction.
type Moves = Vec<(String, u64)>;

/// Moves of each counter between two readings (a counter that went back, an interface that
/// came or went: nothing).
fn deltas(before: &[(String, u64, u64)], after: &[(String, u64, u64)]) -> (Moves, Moves) {
    let mut rx = Vec::new();
    let mut tx = Vec::new();
    for (name, r, t) in after {
        if let Some((_, r0, t0)) = before.iter().find(|(n, _, _)| n == name) {
            rx.push((name.clone(), r.saturating_sub(*r0)));
            tx.push((name.clone(), t.saturating_sub(*t0)));
        }
    }
    (rx, tx)
}

/// The controller's loop; ends when the engine is gone.
pub(super) async fn run(wiring: Wiring) {
    let Some(mut before) = read_counters() else {
        tracing::info!("no /proc/net/dev: background jobs do not give way to other traffic");
        return;
    };
    let mut downloads = Direction::default();
    let mut uploads = Direction::default();
    let mut at = tokio::time::Instant::now();
    let mut own_before = (0, 0);
    let mut idle_before = (0, 0);
    let mut yielding = (false, false);
    let mut interval = SAMPLE_INTERVAL;
    let mut unsent = 0;
    loop {
        tokio::time::sleep(interval).await;
        let (Some(down_total), Some(up_total), Some(down_idle), Some(up_idle)) = (
            wiring.download_total.upgrade(),
            wiring.upload_total.upgrade(),
            wiring.download_idle.upgrade(),
            wiring.upload_idle.upgrade(),
        ) else {
            return;
        };
        let Some(after) = read_counters() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let seconds = now.duration_since(at).as_secs_f64();
        let own = (down_total.moved(), up_total.moved());
        let idle = (down_idle.moved(), up_idle.moved());
        let (rx, tx) = deltas(&before, &after);
        let enabled = wiring.enabled.load(Ordering::Relaxed);
        let (down_own, up_own) = (own.0 - own_before.0, own.1 - own_before.1);
        let down = downloads.observe(&Sample {
            interfaces: rx,
            own: down_own,
            own_other_way: up_own,
            seconds,
        });
        let up = uploads.observe(&Sample {
            interfaces: tx,
            own: up_own,
            own_other_way: down_own,
            seconds,
        });
        tracing::debug!(?down, ?up, down_own, up_own, "idle-bandwidth sample");
        let rate = |r: Option<u64>| r.filter(|_| enabled).and_then(|r| Rate::new(r).ok());
        down_idle.set_rate(rate(down));
        up_idle.set_rate(rate(up));
        let now_yielding = (
            enabled && downloads.yielding(),
            enabled && uploads.yielding(),
        );
        unsent += 1;
        // Told when it changes, and again every few seconds while it lasts (for a window that
        // connects meanwhile).
        if now_yielding != yielding || (yielding != (false, false) && unsent >= RESEND_EVERY) {
            yielding = now_yielding;
            unsent = 0;
            let event = EngineEvent::Yielding {
                download: yielding.0,
                upload: yielding.1,
            };
            wiring.events.publish(event, None);
        }
        // Background jobs moved bytes (through their bucket) in this sample: watch closely.
        let busy = enabled && (idle != idle_before || yielding != (false, false));
        interval = if busy { SAMPLE_INTERVAL } else { IDLE_INTERVAL };
        before = after;
        at = now;
        own_before = own;
        idle_before = idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1024.0 * 1024.0;

    /// A sample of `seconds` on eth0 where Ferry received `own` and others `other` bytes/s.
    fn sample(own: f64, other: f64) -> Sample {
        let seconds = 0.25;
        let wire = (own * WIRE_OVERHEAD + other) * seconds;
        Sample {
            interfaces: vec![("eth0".into(), wire as u64), ("lo".into(), 1000)],
            own: (own * seconds) as u64,
            own_other_way: 0,
            seconds,
        }
    }

    #[test]
    fn alone_the_jobs_are_not_limited() {
        let mut d = Direction::default();
        for _ in 0..20 {
            assert_eq!(d.observe(&sample(5.0 * MB, 0.0)), None);
        }
        assert!(!d.yielding());
        // A little chatter beside is not a competitor.
        assert_eq!(d.observe(&sample(5.0 * MB, 50.0 * 1024.0)), None);
    }

    #[test]
    fn a_greedy_competitor_gets_the_link_and_gives_it_back() {
        let mut d = Direction::default();
        for _ in 0..8 {
            d.observe(&sample(5.0 * MB, 0.0));
        }
        // A browser's download takes half the link: within a second, the jobs trickle.
        let allowed = (0..4)
            .filter_map(|_| d.observe(&sample(2.5 * MB, 2.5 * MB)))
            .find(|allowed| *allowed as f64 <= 0.03 * 5.0 * MB)
            .expect("trickling within a second");
        assert!(allowed as f64 <= 0.03 * 5.0 * MB, "{allowed}");
        assert!(allowed as f64 >= TRICKLE_MIN);
        // It keeps the link while it lasts.
        for _ in 0..20 {
            let allowed = d.observe(&sample(0.1 * MB, 4.9 * MB)).expect("limited");
            assert!(allowed as f64 <= 0.03 * 5.0 * MB);
        }
        // It ends: the jobs are free again within a few samples (doubling each).
        let mut samples = 0;
        let mut own = 0.1 * MB;
        while d.observe(&sample(own, 0.0)).is_some() {
            samples += 1;
            own = (own * 2.0).min(5.0 * MB);
            assert!(samples < 16, "still limited after {samples} samples");
        }
        // The two seconds the window remembers, then the doubling: about three seconds.
        assert!(samples <= 13, "{samples}");
    }

    #[test]
    fn a_competitor_that_leaves_room_keeps_its_share() {
        let mut d = Direction::default();
        for _ in 0..8 {
            d.observe(&sample(20.0 * MB, 0.0));
        }
        // A stream of 1.8 MB/s beside, under a tenth of the link: the jobs get the rest, less
        // a margin.
        let mut allowed = None;
        for _ in 0..10 {
            allowed = d.observe(&sample(16.0 * MB, 1.8 * MB));
        }
        let allowed = allowed.expect("limited") as f64;
        assert!(allowed > 14.0 * MB && allowed < 18.0 * MB, "{allowed}");
        // Smaller than what Ferry's reads may trail by (512 KiB in a second), it is not seen.
        let mut small = Direction::default();
        for _ in 0..8 {
            small.observe(&sample(5.0 * MB, 0.0));
        }
        assert_eq!(small.observe(&sample(4.6 * MB, 0.4 * MB)), None);
    }

    #[test]
    fn the_interface_is_the_one_carrying_ferrys_bytes() {
        let mut d = Direction::default();
        // Ferry's bytes show on eth0 and on a VPN tunnel inside it: the tunnel is closest.
        let s = Sample {
            interfaces: vec![
                ("eth0".into(), 1_400_000),
                ("tun0".into(), 1_300_000),
                ("lo".into(), 5_000_000),
            ],
            own: 1_250_000,
            own_other_way: 0,
            seconds: 0.25,
        };
        d.observe(&s);
        assert_eq!(d.interface.as_deref(), Some("tun0"));
        // Without Ferry's own bytes (none moving), the choice stays.
        let quiet = Sample {
            own: 0,
            ..s.clone()
        };
        d.observe(&quiet);
        assert_eq!(d.interface.as_deref(), Some("tun0"));
    }

    #[test]
    fn on_loopback_ferrys_own_traffic_both_ways_is_its_own() {
        let mut d = Direction::default();
        // A download from a local server: lo counts it received, and its requests and
        // acknowledgements too, all Ferry's.
        let seconds = 0.25;
        let own = 50.0 * MB * seconds;
        let s = Sample {
            interfaces: vec![("lo".into(), (own * 1.02) as u64)],
            own: own as u64,
            own_other_way: 0,
            seconds,
        };
        for _ in 0..10 {
            assert_eq!(d.observe(&s), None);
        }
    }

    #[test]
    fn proc_net_dev_is_read_and_bad_lines_skipped() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:  123456     10    0    0    0     0          0         0   123456      10    0    0    0     0       0          0\n  \
eth0: 999 1 0 0 0 0 0 0 777 1 0 0 0 0 0 0\n  \
bad: 1 2 x\n";
        let parsed = parse_net_dev(text);
        assert_eq!(
            parsed,
            vec![
                ("lo".to_string(), 123_456, 123_456),
                ("eth0".to_string(), 999, 777)
            ]
        );
        let (rx, tx) = deltas(&parsed, &[("eth0".into(), 1999, 700)]);
        assert_eq!(rx, vec![("eth0".to_string(), 1000)]);
        assert_eq!(
            tx,
            vec![("eth0".to_string(), 0)],
            "a counter that went back"
        );
    }
}
