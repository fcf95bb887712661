//! The BITS bandwidth policy (spec §5, T28): a weekly schedule of windows, each with a limit per
//! background priority, and the limits outside every window. FOREGROUND jobs are never limited by
//! it. A limit of 0 blocks the priority: its jobs wait in TRANSIENT_ERROR with
//! BG_E_BLOCKED_BY_POLICY until a window allows them again.
//!
//! Pure: [`BandwidthPolicy::at`] takes the local wall-clock time and says what holds and until
//! when; the engine reads the clock and carries it out.

use super::{Priority, Rate};
use chrono::{Datelike, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the policy allows one background priority.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ClassLimit {
    #[default]
    Unlimited,
    /// 0: no transfer at all (BG_E_BLOCKED_BY_POLICY).
    Blocked,
    Limited(Rate),
}

impl ClassLimit {
    /// Curl's rate syntax, `0` (or `blocked`) to block, `none` (or `unlimited`) for no limit.
    pub fn parse(text: &str) -> Result<ClassLimit, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "unlimited" => Ok(ClassLimit::Unlimited),
            "0" | "blocked" => Ok(ClassLimit::Blocked),
            _ => Rate::parse(text).map(ClassLimit::Limited).map_err(|e| {
                format!("{e}; or 0 to block background transfers, `none` for no limit")
            }),
        }
    }

    pub fn rate(self) -> Option<Rate> {
        match self {
            ClassLimit::Limited(rate) => Some(rate),
            _ => None,
        }
    }
}

impl fmt::Display for ClassLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassLimit::Unlimited => f.write_str("none"),
            ClassLimit::Blocked => f.write_str("0"),
            ClassLimit::Limited(rate) => rate.fmt(f),
        }
    }
}

impl Serialize for ClassLimit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClassLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ClassLimit, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ClassLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate like \"500K\", \"0\" to block, or \"none\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ClassLimit, E> {
                ClassLimit::parse(text).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<ClassLimit, E> {
                if bytes == 0 {
                    return Ok(ClassLimit::Blocked);
                }
                Rate::new(bytes).map(ClassLimit::Limited).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<ClassLimit, E> {
                let bytes = u64::try_from(bytes)
                    .map_err(|_| E::custom(format!("{bytes} is not a rate: it is negative")))?;
                self.visit_u64(bytes)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The limits of the three background priorities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassLimits {
    pub high: ClassLimit,
    pub normal: ClassLimit,
    pub low: ClassLimit,
}

impl ClassLimits {
    /// The limit for a job of `priority`: FOREGROUND is never limited by the policy.
    pub fn for_priority(&self, priority: Priority) -> ClassLimit {
        match priority {
            Priority::Foreground => ClassLimit::Unlimited,
            Priority::High => self.high,
            Priority::Normal => self.normal,
            Priority::Low => self.low,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        *self == ClassLimits::default()
    }
}

/// A day of the week, as the config file writes it (`Mon` … `Sun`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Day {
    #[serde(alias = "Monday")]
    Mon,
    #[serde(alias = "Tuesday")]
    Tue,
    #[serde(alias = "Wednesday")]
    Wed,
    #[serde(alias = "Thursday")]
    Thu,
    #[serde(alias = "Friday")]
    Fri,
    #[serde(alias = "Saturday")]
    Sat,
    #[serde(alias = "Sunday")]
    Sun,
}

impl Day {
    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    /// 0 for Monday … 6 for Sunday.
    pub fn index(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][self as usize]
    }
}

const MINUTES_PER_DAY: u32 = 24 * 60;
const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY;

/// A time of day to the minute, `"09:00"`; `"24:00"` is the end of the day (as an end only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(u32);

impl TimeOfDay {
    pub fn new(hour: u32, minute: u32) -> Result<TimeOfDay, String> {
        if minute > 59 || hour > 24 || (hour == 24 && minute != 0) {
            return Err(format!(
                "{hour:02}:{minute:02} is not a time of day: give 00:00 to 24:00"
            ));
        }
        Ok(TimeOfDay(hour * 60 + minute))
    }

    pub fn parse(text: &str) -> Result<TimeOfDay, String> {
        let usage = "give hours and minutes like \"09:00\" or \"17:30\" (24-hour clock)";
        let (hour, minute) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not a time of day: {usage}"))?;
        let number = |part: &str| {
            (!part.is_empty() && part.len() <= 2 && part.chars().all(|c| c.is_ascii_digit()))
                .then(|| part.parse::<u32>().ok())
                .flatten()
                .ok_or_else(|| format!("{text:?} is not a time of day: {usage}"))
        };
        TimeOfDay::new(number(hour)?, number(minute)?)
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TimeOfDay, D::Error> {
        let text = String::deserialize(deserializer)?;
        TimeOfDay::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One window of the schedule: on each of `days`, from `start` to `end` (an end at or before the
/// start runs past midnight into the next day).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyWindow {
    pub days: Vec<Day>,
    pub start: TimeOfDay,
    pub end: TimeOfDay,
    #[serde(default)]
    pub high: ClassLimit,
    #[serde(default)]
    pub normal: ClassLimit,
    #[serde(default)]
    pub low: ClassLimit,
}

impl PolicyWindow {
    pub fn limits(&self) -> ClassLimits {
        ClassLimits {
            high: self.high,
            normal: self.normal,
            low: self.low,
        }
    }

    /// The window's stretches as minutes of the week, `[from, to)` with `to` up to two days past
    /// the week's end for a window that runs past Sunday midnight.
    fn stretches(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let (start, end) = (self.start.minutes(), self.end.minutes());
        let length = if end > start {
            end - start
        } else {
            end + MINUTES_PER_DAY - start
        };
        self.days.iter().map(move |day| {
            let from = day.index() * MINUTES_PER_DAY + start;
            (from, from + length)
        })
    }

    fn contains(&self, minute_of_week: u32) -> bool {
        self.stretches().any(|(from, to)| {
            // A stretch past the week's end also covers the start of the next week.
            (from..to).contains(&minute_of_week)
                || (from..to).contains(&(minute_of_week + MINUTES_PER_WEEK))
        })
    }

    /// "Mon–Fri 09:00–17:00"-like text for messages and the window.
    pub fn describe(&self) -> String {
        let mut days: Vec<Day> = self.days.clone();
        days.sort();
        days.dedup();
        let weekdays = [Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri];
        let names = if days.len() == 7 {
            "Every day".to_string()
        } else if days == weekdays {
            "Mon–Fri".to_string()
        } else if days == [Day::Sat, Day::Sun] {
            "Sat–Sun".to_string()
        } else {
            days.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
        };
        format!("{names} {}–{}", self.start, self.end)
    }
}

/// The schedule: windows in order (the first that contains a moment gives its limits) and the
/// limits outside them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BandwidthPolicy {
    pub windows: Vec<PolicyWindow>,
    pub outside: ClassLimits,
}

/// What the policy says at a moment (the default: nothing limited, for ever).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyNow {
    pub limits: ClassLimits,
    /// The window in effect (its index in [`BandwidthPolicy::windows`]), if any.
    pub window: Option<usize>,
    /// Minutes from the moment (rounded down to its minute) until the limits may change; `None`
    /// when they never do.
    pub minutes_left: Option<u32>,
}

/// Windows per schedule: more is a mistake (a week has 168 hours).
pub const MAX_WINDOWS: usize = 100;

impl BandwidthPolicy {
    /// Whether the policy can limit anything at all.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.outside.is_unlimited()
    }

    /// Checks what a file or a client may get wrong; the error names the window.
    pub fn validate(&self) -> Result<(), String> {
        if self.windows.len() > MAX_WINDOWS {
            return Err(format!(
                "{} windows: give at most {MAX_WINDOWS}",
                self.windows.len()
            ));
        }
        for (index, window) in self.windows.iter().enumerate() {
            let name = format!("window {} ({})", index + 1, window.describe());
            if window.days.is_empty() {
                return Err(format!(
                    "{name} has no days: give some of Mon, Tue, Wed, Thu, Fri, Sat, Sun"
                ));
            }
            if window.start.minutes() >= MINUTES_PER_DAY {
                return Err(format!(
                    "{name} starts at 24:00: start it at 00:00 of the next day"
                ));
            }
            if window.start == window.end {
                return Err(format!(
                    "{name} starts when it ends: for the whole day give 00:00 to 24:00"
                ));
            }
        }
        Ok(())
    }

    /// The limits at `local` (the wall clock's local time) and how long they hold.
    pub fn at(&self, local: NaiveDateTime) -> PolicyNow {
        let minute = local.weekday().num_days_from_monday() * MINUTES_PER_DAY
            + local.hour() * 60
            + local.minute();
        let window = self.windows.iter().position(|w| w.contains(minute));
        let limits = window.map_or(self.outside, |i| self.windows[i].limits());
        // The next boundary of any window, as minutes after `minute` (within a week).
        let minutes_left = self
            .windows
            .iter()
            .flat_map(|w| w.stretches())
            .flat_map(|(from, to)| [from, to])
            .map(|boundary| {
                let ahead =
                    (boundary % MINUTES_PER_WEEK + MINUTES_PER_WEEK - minute) % MINUTES_PER_WEEK;
                if ahead == 0 { MINUTES_PER_WEEK } else { ahead }
            })
            .min();
        PolicyNow {
            limits,
            window,
            minutes_left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    /// 2026-11-30 is a Monday.
    fn at(day: u32, hour: u32, minute: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, 30)
            .and_then(|d| d.checked_add_days(chrono::Days::new(day.into())))
            .and_then(|d| d.and_hms_opt(hour, minute, 30))
            .expect("a date")
    }

    fn workdays(high: &str, normal: &str, low: &str) -> BandwidthPolicy {
        let parse = |t: &str| ClassLimit::parse(t).expect("limit");
        BandwidthPolicy {
            windows: vec![PolicyWindow {
                days: vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
                start: TimeOfDay::parse("09:00").expect("time"),
                end: TimeOfDay::parse("17:00").expect("time"),
                high: parse(high),
                normal: parse(normal),
                low: parse(low),
            }],
            outside: ClassLimits::default(),
        }
    }

    #[test]
    fn limits_follow_the_weekly_windows() {
        let policy = workdays("2M", "512K", "0");
        let inside = policy.at(at(0, 10, 0));
        assert_eq!(inside.window, Some(0));
        assert_eq!(
            inside.limits.for_priority(Priority::Low),
            ClassLimit::Blocked
        );
        assert_eq!(
            inside.limits.for_priority(Priority::Normal).rate(),
            Rate::parse("512K").ok()
        );
        assert_eq!(
            inside.limits.for_priority(Priority::Foreground),
            ClassLimit::Unlimited,
            "FOREGROUND is never limited"
        );
        assert_eq!(inside.minutes_left, Some(7 * 60), "until 17:00");
        let evening = policy.at(at(0, 17, 0));
        assert_eq!(evening.window, None, "the end is not in the window");
        assert_eq!(
            evening.minutes_left,
            Some(16 * 60),
            "until 09:00 the next day"
        );
        let friday_night = policy.at(at(4, 18, 0));
        assert_eq!(friday_night.window, None);
        assert_eq!(
            friday_night.minutes_left,
            Some((6 + 48 + 9) * 60),
            "until Monday 09:00"
        );
        assert_eq!(policy.at(at(5, 10, 0)).window, None, "Saturday");
    }

    #[test]
    fn a_window_may_run_past_midnight_and_past_the_week() {
        let mut policy = workdays("none", "0", "0");
        policy.windows[0].days = vec![Day::Sun];
        policy.windows[0].start = TimeOfDay::parse("22:00").expect("time");
        policy.windows[0].end = TimeOfDay::parse("06:00").expect("time");
        assert_eq!(policy.at(at(6, 23, 0)).window, Some(0), "Sunday night");
        let monday = policy.at(at(0, 5, 0));
        assert_eq!(monday.window, Some(0), "Monday early, the next week");
        assert_eq!(monday.minutes_left, Some(60));
        assert_eq!(policy.at(at(0, 6, 0)).window, None);
        assert_eq!(policy.at(at(6, 21, 59)).minutes_left, Some(1));
    }

    #[test]
    fn the_first_window_that_holds_wins() {
        let mut policy = workdays("1M", "1M", "1M");
        let mut all_day = policy.windows[0].clone();
        all_day.days = Day::ALL.to_vec();
        all_day.start = TimeOfDay::parse("00:00").expect("time");
        all_day.end = TimeOfDay::parse("24:00").expect("time");
        all_day.normal = ClassLimit::Blocked;
        policy.windows.push(all_day);
        assert_eq!(policy.at(at(0, 10, 0)).window, Some(0));
        assert_eq!(policy.at(at(0, 8, 0)).window, Some(1));
        assert_eq!(policy.at(at(6, 8, 0)).window, Some(1));
        assert!(policy.validate().is_ok());
    }

    #[test]
    fn without_windows_the_outside_limits_hold_for_ever() {
        let policy = BandwidthPolicy {
            windows: Vec::new(),
            outside: ClassLimits {
                low: ClassLimit::Blocked,
                ..ClassLimits::default()
            },
        };
        let now = policy.at(at(2, 12, 0));
        assert_eq!(now.limits.low, ClassLimit::Blocked);
        assert_eq!(now.minutes_left, None);
        assert!(!policy.is_empty());
        assert!(BandwidthPolicy::default().is_empty());
    }

    #[test]
    fn config_text_reads_and_errors_name_the_problem() {
        let text = r#"(
            windows: [(days: [Mon, Tuesday], start: "9:30", end: "24:00", low: "0", normal: 65536, high: "none")],
            outside: (low: "128K"),
        )"#;
        let policy: BandwidthPolicy = ron::from_str(text).expect("valid");
        assert_eq!(policy.windows[0].start.to_string(), "09:30");
        assert_eq!(policy.windows[0].low, ClassLimit::Blocked);
        assert_eq!(policy.windows[0].normal.rate(), Rate::parse("64K").ok());
        assert_eq!(policy.outside.low.rate(), Rate::parse("128K").ok());
        let back: BandwidthPolicy =
            ron::from_str(&ron::to_string(&policy).expect("writes")).expect("reads back");
        assert_eq!(back, policy);
        let json: BandwidthPolicy =
            serde_json::from_str(&serde_json::to_string(&policy).expect("json")).expect("json");
        assert_eq!(json, policy);

        for (text, reason) in [
            (
                r#"(windows: [(days: [Mon], start: "25:00", end: "26:00")])"#,
                "not a time of day",
            ),
            (
                r#"(windows: [(days: [Mon], start: "9", end: "17:00")])"#,
                "not a time of day",
            ),
            (
                r#"(windows: [(days: [Mon], start: "09:60", end: "17:00")])"#,
                "not a time of day",
            ),
            (
                r#"(windows: [(days: [Mon], start: "09:00", end: "17:00", low: "2X")])"#,
                "unknown unit",
            ),
            (
                r#"(windows: [(days: [Mon], start: "09:00", end: "17:00", low: "100")])"#,
                "below the lowest",
            ),
            (
                r#"(windows: [(days: [Moon], start: "09:00", end: "17:00")])"#,
                "Moon",
            ),
        ] {
            let error = ron::from_str::<BandwidthPolicy>(text)
                .expect_err(text)
                .to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
        for (window, reason) in [
            (r#"(days: [], start: "09:00", end: "17:00")"#, "has no days"),
            (
                r#"(days: [Mon], start: "24:00", end: "17:00")"#,
                "starts at 24:00",
            ),
            (
                r#"(days: [Mon], start: "09:00", end: "09:00")"#,
                "starts when it ends",
            ),
        ] {
            let policy: BandwidthPolicy =
                ron::from_str(&format!("(windows: [{window}])")).expect(window);
            let error = policy.validate().expect_err(window);
            assert!(error.contains(reason), "{window}: {error}");
            assert!(error.contains("window 1"), "{error}");
        }
    }
}
