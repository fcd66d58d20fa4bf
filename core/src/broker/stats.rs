//! What the broker counts for its operators: RocketMQ's `BrokerStatsManager` items (per topic and
//! per group, read by VIEW_BROKER_STATS_DATA, GET_TOPIC_STATS_INFO's `topicPutTps` and
//! GET_CONSUME_STATS's `consumeTps`) and the store's rates for GET_BROKER_RUNTIME_INFO
//! (`putTps`, `getTransferredTps`, …).
//!
//! Following RocketMQ's `StatsItem` (common/stats/StatsItem.java): an item holds a running
//! `value` (messages or bytes) and `times` (how many events added to it), and three windows of
//! snapshots: every 10 s keeping 7 (the minute), every 10 min keeping 7 (the hour), every hour
//! keeping 25 (the day). A window's figures compare its oldest and newest snapshot:
//!
//! ```text
//!   sum = value_new − value_old     tps = sum × 1000 / (t_new − t_old)     avgpt = sum / (times_new − times_old)
//! ```
//!
//! RocketMQ samples on timers. Here a window catches up when its item is touched or read: a
//! snapshot due at tick `T` holds the counters as they were at `T`, and nothing changed them
//! between the last touch and now, so the snapshots are exactly what a timer would have taken,
//! with no wake-up of an idle broker and `now_ms` injected.
//!
//! The store's rates (`StoreStatsService`) are one-second snapshots of running counters, 601
//! kept; `putTps` is `"<10 s> <60 s> <600 s>"`, each empty until that many seconds were seen.

use std::collections::{BTreeMap, VecDeque};

/// Stat names (RocketMQ's `Stats`), as VIEW_BROKER_STATS_DATA takes them.
pub const TOPIC_PUT_NUMS: &str = "TOPIC_PUT_NUMS";
pub const TOPIC_PUT_SIZE: &str = "TOPIC_PUT_SIZE";
pub const GROUP_GET_NUMS: &str = "GROUP_GET_NUMS";
pub const GROUP_GET_SIZE: &str = "GROUP_GET_SIZE";
pub const SNDBCK_PUT_NUMS: &str = "SNDBCK_PUT_NUMS";
pub const BROKER_PUT_NUMS: &str = "BROKER_PUT_NUMS";
pub const BROKER_GET_NUMS: &str = "BROKER_GET_NUMS";
pub const BROKER_PUT_NUMS_WITHOUT_SYSTEM_TOPIC: &str = "BROKER_PUT_NUMS_WITHOUT_SYSTEM_TOPIC";
pub const BROKER_GET_NUMS_WITHOUT_SYSTEM_TOPIC: &str = "BROKER_GET_NUMS_WITHOUT_SYSTEM_TOPIC";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Snapshot {
    at_ms: u64,
    times: u64,
    value: u64,
}

/// Snapshots every `period_ms`, the newest `keep`.
#[derive(Clone, Debug)]
struct Window {
    period_ms: u64,
    keep: usize,
    samples: VecDeque<Snapshot>,
    next_ms: u64,
}

impl Window {
    fn new(period_ms: u64, keep: usize, now_ms: u64) -> Self {
        let mut samples = VecDeque::with_capacity(keep + 1);
        // RocketMQ's first sample also inserts a zero one period back, so a window has a
        // figure after its first tick.
        samples.push_back(Snapshot {
            at_ms: now_ms.saturating_sub(period_ms),
            times: 0,
            value: 0,
        });
        Self {
            period_ms,
            keep,
            samples,
            next_ms: now_ms,
        }
    }

    /// Takes the snapshots due by `now_ms`: the counters are `times`/`value` at each of them.
    fn catch_up(&mut self, now_ms: u64, times: u64, value: u64) {
        if now_ms < self.next_ms {
            return;
        }
        let due = (now_ms - self.next_ms) / self.period_ms + 1;
        // Only the newest `keep` can stay.
        let skip = due.saturating_sub(self.keep as u64);
        let mut at = self.next_ms + skip * self.period_ms;
        for _ in skip..due {
            self.samples.push_back(Snapshot {
                at_ms: at,
                times,
                value,
            });
            at += self.period_ms;
        }
        while self.samples.len() > self.keep {
            self.samples.pop_front();
        }
        self.next_ms = at;
    }

    fn figures(&self) -> StatsFigures {
        let (Some(old), Some(new)) = (self.samples.front(), self.samples.back()) else {
            return StatsFigures::default();
        };
        let sum = new.value - old.value;
        let elapsed = new.at_ms.saturating_sub(old.at_ms);
        let times = new.times - old.times;
        StatsFigures {
            sum,
            tps: if elapsed == 0 {
                0.0
            } else {
                sum as f64 * 1000.0 / elapsed as f64
            },
            avgpt: if times == 0 {
                0.0
            } else {
                sum as f64 / times as f64
            },
        }
    }
}

/// One window's figures (RocketMQ's `StatsSnapshot`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StatsFigures {
    pub sum: u64,
    pub tps: f64,
    pub avgpt: f64,
}

/// One item: a running value and its windows.
#[derive(Clone, Debug)]
pub struct StatsItem {
    value: u64,
    times: u64,
    minute: Window,
    hour: Window,
    day: Window,
}

impl StatsItem {
    fn new(now_ms: u64) -> Self {
        Self {
            value: 0,
            times: 0,
            minute: Window::new(10_000, 7, now_ms),
            hour: Window::new(600_000, 7, now_ms),
            day: Window::new(3_600_000, 25, now_ms),
        }
    }

    fn catch_up(&mut self, now_ms: u64) {
        let (times, value) = (self.times, self.value);
        self.minute.catch_up(now_ms, times, value);
        self.hour.catch_up(now_ms, times, value);
        self.day.catch_up(now_ms, times, value);
    }

    fn add(&mut self, now_ms: u64, value: u64, times: u64) {
        self.catch_up(now_ms);
        self.value += value;
        self.times += times;
    }

    /// The running value.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// (minute, hour, day) at `now_ms`.
    pub fn figures(&mut self, now_ms: u64) -> [StatsFigures; 3] {
        self.catch_up(now_ms);
        [
            self.minute.figures(),
            self.hour.figures(),
            self.day.figures(),
        ]
    }
}

/// A running counter sampled once a second (RocketMQ's `StoreStatsService` rates).
#[derive(Clone, Debug)]
struct Rate {
    total: u64,
    window: Window,
}

/// Seconds of one-second snapshots a [`Rate`] keeps: enough for its 600 s figure.
const RATE_SAMPLES: usize = 601;

impl Rate {
    fn new(now_ms: u64) -> Self {
        let mut window = Window::new(1_000, RATE_SAMPLES, now_ms);
        // Rates start from their first real second, not from a zero one back.
        window.samples.clear();
        Self { total: 0, window }
    }

    fn add(&mut self, now_ms: u64, n: u64) {
        self.window.catch_up(now_ms, 0, self.total);
        self.total += n;
    }

    /// Messages per second over the last `seconds` one-second snapshots; `None` until more
    /// than that many were taken (RocketMQ prints an empty item then).
    fn per_second(&mut self, now_ms: u64, seconds: usize) -> Option<f64> {
        self.window.catch_up(now_ms, 0, self.total);
        let samples = &self.window.samples;
        if samples.len() <= seconds {
            return None;
        }
        let new = samples.back()?;
        let old = samples.get(samples.len() - 1 - seconds)?;
        let elapsed = new.at_ms - old.at_ms;
        Some(if elapsed == 0 {
            0.0
        } else {
            (new.value - old.value) as f64 * 1000.0 / elapsed as f64
        })
    }

    /// `"<10 s> <60 s> <600 s>"` as RocketMQ prints it (Java's `Double.toString`).
    fn triple(&mut self, now_ms: u64) -> String {
        [10, 60, 600]
            .map(|s| {
                self.per_second(now_ms, s)
                    .map_or(String::new(), java_double)
            })
            .join(" ")
    }
}

/// A double as Java's `Double.toString` prints ordinary values: always with a fraction.
pub fn java_double(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Every counter the broker keeps.
#[derive(Clone, Debug)]
pub struct BrokerStats {
    /// Stat name → key → item: nested so the hot path (a put, a pull) finds its items by `&str`
    /// without allocating a key.
    items: BTreeMap<&'static str, BTreeMap<String, StatsItem>>,
    boot_ms: u64,
    put: Rate,
    get_found: Rate,
    get_miss: Rate,
    transferred: Rate,
    /// Messages put (each message of a batch counts) and their stored bytes.
    pub put_messages_total: u64,
    pub put_bytes_total: u64,
    pub put_failed_total: u64,
    /// Largest time one put took, ms (the core puts synchronously: the group commit's wait is
    /// not part of it).
    pub put_time_max_ms: u64,
    /// Messages handed to consumers.
    pub get_transferred_total: u64,
    /// The day (UTC days since the epoch) the "today morning" figures belong to, and the
    /// figures: `[put, get]` at this morning and at yesterday morning (RocketMQ's
    /// `BrokerStats.record()`, taken once a day; zero until the first day changes).
    day: u64,
    today_morning: [u64; 2],
    yesterday_morning: [u64; 2],
}

const DAY_MS: u64 = 86_400_000;

impl BrokerStats {
    pub fn new(now_ms: u64) -> Self {
        Self {
            items: BTreeMap::new(),
            boot_ms: now_ms,
            put: Rate::new(now_ms),
            get_found: Rate::new(now_ms),
            get_miss: Rate::new(now_ms),
            transferred: Rate::new(now_ms),
            put_messages_total: 0,
            put_bytes_total: 0,
            put_failed_total: 0,
            put_time_max_ms: 0,
            get_transferred_total: 0,
            day: now_ms / DAY_MS,
            today_morning: [0; 2],
            yesterday_morning: [0; 2],
        }
    }

    /// When the broker started (epoch ms).
    pub fn boot_ms(&self) -> u64 {
        self.boot_ms
    }

    fn add(&mut self, now_ms: u64, name: &'static str, key: &str, value: u64, times: u64) {
        let items = self.items.entry(name).or_default();
        match items.get_mut(key) {
            Some(item) => item.add(now_ms, value, times),
            None => {
                let mut item = StatsItem::new(now_ms);
                item.add(now_ms, value, times);
                items.insert(key.to_owned(), item);
            }
        }
    }

    fn roll_day(&mut self, now_ms: u64, cluster: &str) {
        let day = now_ms / DAY_MS;
        if day != self.day {
            self.yesterday_morning = self.today_morning;
            self.today_morning = [
                self.value(BROKER_PUT_NUMS_WITHOUT_SYSTEM_TOPIC, cluster),
                self.value(BROKER_GET_NUMS_WITHOUT_SYSTEM_TOPIC, cluster),
            ];
            self.day = day;
        }
    }

    /// A put of `messages` messages (`bytes` stored) to `topic` succeeded.
    pub fn on_put(
        &mut self,
        now_ms: u64,
        cluster: &str,
        topic: &str,
        system: bool,
        messages: u64,
        bytes: u64,
    ) {
        self.roll_day(now_ms, cluster);
        self.add(now_ms, TOPIC_PUT_NUMS, topic, messages, 1);
        self.add(now_ms, TOPIC_PUT_SIZE, topic, bytes, 1);
        self.add(now_ms, BROKER_PUT_NUMS, cluster, messages, 0);
        if !system {
            self.add(
                now_ms,
                BROKER_PUT_NUMS_WITHOUT_SYSTEM_TOPIC,
                cluster,
                messages,
                0,
            );
        }
        self.put.add(now_ms, messages);
        self.put_messages_total += messages;
        self.put_bytes_total += bytes;
    }

    /// A put failed (refused by the store).
    pub fn on_put_failed(&mut self) {
        self.put_failed_total += 1;
    }

    /// A pull of `group` on `topic` found `messages` messages (`bytes`); zero: it found none.
    #[allow(clippy::too_many_arguments)]
    pub fn on_get(
        &mut self,
        now_ms: u64,
        cluster: &str,
        topic: &str,
        group: &str,
        system: bool,
        messages: u64,
        bytes: u64,
    ) {
        self.roll_day(now_ms, cluster);
        if messages == 0 {
            self.get_miss.add(now_ms, 1);
            return;
        }
        self.get_found.add(now_ms, 1);
        let key = format!("{topic}@{group}");
        self.add(now_ms, GROUP_GET_NUMS, &key, messages, 1);
        self.add(now_ms, GROUP_GET_SIZE, &key, bytes, 1);
        self.add(now_ms, BROKER_GET_NUMS, cluster, messages, 0);
        if !system {
            self.add(
                now_ms,
                BROKER_GET_NUMS_WITHOUT_SYSTEM_TOPIC,
                cluster,
                messages,
                0,
            );
        }
        self.transferred.add(now_ms, messages);
        self.get_transferred_total += messages;
    }

    /// A consumer of `group` sent a message of `topic` back (to retry).
    pub fn on_send_back(&mut self, now_ms: u64, topic: &str, group: &str) {
        self.add(now_ms, SNDBCK_PUT_NUMS, &format!("{topic}@{group}"), 1, 1);
    }

    /// The running value of one item (0 when it never counted).
    pub fn value(&self, name: &str, key: &str) -> u64 {
        self.items
            .get(name)
            .and_then(|items| items.get(key))
            .map_or(0, StatsItem::value)
    }

    /// One item's (minute, hour, day) figures; `None` when it never counted.
    pub fn figures(&mut self, now_ms: u64, name: &str, key: &str) -> Option<[StatsFigures; 3]> {
        self.items
            .get_mut(name)?
            .get_mut(key)
            .map(|item| item.figures(now_ms))
    }

    /// The minute tps of one item (0.0 when it never counted).
    pub fn minute_tps(&mut self, now_ms: u64, name: &str, key: &str) -> f64 {
        self.figures(now_ms, name, key).map_or(0.0, |f| f[0].tps)
    }

    /// Drops every item keyed by `topic` (a deleted topic).
    pub fn forget_topic(&mut self, topic: &str) {
        let prefix = format!("{topic}@");
        for items in self.items.values_mut() {
            items.retain(|key, _| key != topic && !key.starts_with(&prefix));
        }
    }

    /// Drops every item of `group` (a deleted subscription group).
    pub fn forget_group(&mut self, group: &str) {
        let suffix = format!("@{group}");
        for items in self.items.values_mut() {
            items.retain(|key, _| !key.ends_with(&suffix));
        }
    }

    /// The store's rates and totals, as GET_BROKER_RUNTIME_INFO's keys.
    pub fn runtime_rates(&mut self, now_ms: u64, cluster: &str) -> BTreeMap<String, String> {
        self.roll_day(now_ms, cluster);
        let mut out = BTreeMap::new();
        out.insert("putTps".to_owned(), self.put.triple(now_ms));
        out.insert("getFoundTps".to_owned(), self.get_found.triple(now_ms));
        out.insert("getMissTps".to_owned(), self.get_miss.triple(now_ms));
        let total = [10, 60, 600].map(|s| {
            let found = self.get_found.per_second(now_ms, s).unwrap_or(0.0);
            let miss = self.get_miss.per_second(now_ms, s).unwrap_or(0.0);
            java_double(found + miss)
        });
        out.insert("getTotalTps".to_owned(), total.join(" "));
        let transferred = self.transferred.triple(now_ms);
        // RocketMQ 5 spells it "Transferred"; 4.9's tools read "Transfered".
        out.insert("getTransferredTps".to_owned(), transferred.clone());
        out.insert("getTransferedTps".to_owned(), transferred);
        out.insert(
            "putMessageTimesTotal".to_owned(),
            // RocketMQ reports 1 while nothing was put (it divides by it).
            self.put_messages_total.max(1).to_string(),
        );
        out.insert(
            "putMessageSizeTotal".to_owned(),
            self.put_bytes_total.to_string(),
        );
        out.insert(
            "putMessageFailedTimes".to_owned(),
            self.put_failed_total.to_string(),
        );
        out.insert(
            "putMessageAverageSize".to_owned(),
            java_double(self.put_bytes_total as f64 / self.put_messages_total.max(1) as f64),
        );
        out.insert(
            "putMessageEntireTimeMax".to_owned(),
            self.put_time_max_ms.to_string(),
        );
        let now_put = self.value(BROKER_PUT_NUMS_WITHOUT_SYSTEM_TOPIC, cluster);
        let now_get = self.value(BROKER_GET_NUMS_WITHOUT_SYSTEM_TOPIC, cluster);
        for (key, value) in [
            ("msgPutTotalTodayNow", now_put),
            ("msgGetTotalTodayNow", now_get),
            ("msgPutTotalTodayMorning", self.today_morning[0]),
            ("msgGetTotalTodayMorning", self.today_morning[1]),
            ("msgPutTotalYesterdayMorning", self.yesterday_morning[0]),
            ("msgGetTotalYesterdayMorning", self.yesterday_morning[1]),
        ] {
            out.insert(key.to_owned(), value.to_string());
        }
        out.insert("bootTimestamp".to_owned(), self.boot_ms.to_string());
        let up_s = now_ms.saturating_sub(self.boot_ms) / 1000;
        out.insert(
            "runtime".to_owned(),
            format!(
                "[ {} days, {} hours, {} minutes, {} seconds ]",
                up_s / 86_400,
                up_s / 3600 % 24,
                up_s / 60 % 60,
                up_s % 60
            ),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn a_minute_window_gives_rocketmqs_tps_sum_and_average() {
        let mut s = BrokerStats::new(T0);
        // 100 messages a second in batches of 10, for 70 s.
        for second in 0..70 {
            for _ in 0..10 {
                s.on_put(T0 + second * 1000, "C", "T", false, 10, 10_240);
            }
        }
        let [minute, hour, _] = s.figures(T0 + 70_000, TOPIC_PUT_NUMS, "T").unwrap();
        // Snapshots at 10 s steps; the minute spans the newest 7 (60 s).
        assert_eq!(minute.sum, 6_000);
        assert!((minute.tps - 100.0).abs() < 1e-9, "{minute:?}");
        assert!((minute.avgpt - 10.0).abs() < 1e-9);
        // The hour has its zero point one period back and the first tick.
        assert_eq!(hour.sum, 0);
        assert_eq!(s.value(BROKER_PUT_NUMS, "C"), 7_000);
        assert!((s.minute_tps(T0 + 70_000, TOPIC_PUT_SIZE, "T") - 102_400.0).abs() < 1e-6);
        // An idle item's minute decays to zero once its window holds no change.
        assert_eq!(s.minute_tps(T0 + 200_000, TOPIC_PUT_NUMS, "T"), 0.0);
        assert_eq!(s.figures(T0, "NO_SUCH_STAT", "T"), None);
        assert_eq!(s.figures(T0, TOPIC_PUT_NUMS, "other"), None);
    }

    #[test]
    fn rates_print_empty_items_until_enough_seconds_were_seen() {
        let mut s = BrokerStats::new(T0);
        let rates = s.runtime_rates(T0, "C");
        assert_eq!(rates["putTps"], "  ");
        assert_eq!(rates["putMessageTimesTotal"], "1");
        for second in 0..15 {
            s.on_put(T0 + second * 1000, "C", "T", false, 50, 100);
        }
        let rates = s.runtime_rates(T0 + 15_000, "C");
        let items: Vec<&str> = rates["putTps"].split(' ').collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], "50.0");
        assert_eq!(items[1], "");
        assert_eq!(rates["msgPutTotalTodayNow"], "750");
        assert_eq!(rates["getTransferedTps"], rates["getTransferredTps"]);
        assert_eq!(
            rates["runtime"],
            "[ 0 days, 0 hours, 0 minutes, 15 seconds ]"
        );
    }

    #[test]
    fn system_topics_do_not_count_in_todays_totals_and_mornings_roll_daily() {
        let mut s = BrokerStats::new(T0);
        s.on_put(T0, "C", "T", false, 3, 30);
        s.on_put(T0, "C", "SCHEDULE_TOPIC_XXXX", true, 5, 50);
        s.on_get(T0, "C", "T", "G", false, 2, 20);
        s.on_get(T0, "C", "T", "G", false, 0, 0);
        assert_eq!(s.value(BROKER_PUT_NUMS, "C"), 8);
        assert_eq!(s.value(GROUP_GET_NUMS, "T@G"), 2);
        let next_day = T0 + DAY_MS;
        let rates = s.runtime_rates(next_day, "C");
        assert_eq!(rates["msgPutTotalTodayNow"], "3");
        assert_eq!(rates["msgPutTotalTodayMorning"], "3");
        assert_eq!(rates["msgGetTotalTodayMorning"], "2");
        assert_eq!(rates["msgPutTotalYesterdayMorning"], "0");
        s.forget_group("G");
        assert_eq!(s.value(GROUP_GET_NUMS, "T@G"), 0);
        s.forget_topic("T");
        assert_eq!(s.value(TOPIC_PUT_NUMS, "T"), 0);
    }

    #[test]
    fn java_doubles_keep_a_fraction() {
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(12.0), "12.0");
        assert_eq!(java_double(12.5), "12.5");
    }
}
