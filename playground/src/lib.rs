//! `vostok-playground`: Vostok in the browser.
//!
//! The real sans-IO core runs a seeded in-memory cluster ([`vostok_core::cluster::Cluster`]:
//! a NameServer, brokers over in-memory segment files, producers and consumer groups, virtual
//! time) and this crate hands it to JavaScript through wasm-bindgen. Everything crosses the
//! boundary as JSON strings in the shapes of the core's serde types, so the page never
//! re-implements protocol logic: it sends [`Action`](vostok_core::cluster::Action)s and renders
//! [`Event`](vostok_core::cluster::Event)s and [`Snapshot`](vostok_core::cluster::Snapshot)s. A
//! seed plus the user's timestamped actions replays a session exactly.
//!
//! ```js
//! import init, { Playground, scenarios } from "./pkg/vostok_playground.js";
//! await init();
//! const pg = new Playground(42n, "basic");    // the seed is a u64: a BigInt in JS
//! pg.apply('{"action":"add_consumer","group":"g1"}');
//! const events = JSON.parse(pg.run_for(1000));
//! const snapshot = JSON.parse(pg.snapshot());
//! ```
//!
//! `scripts/build-playground.sh` builds `playground/pkg/` (`vostok_playground.js` and
//! `vostok_playground_bg.wasm`).

use wasm_bindgen::prelude::*;

pub use vostok_core as core;
use vostok_core::cluster::{Action, Cluster};

/// One playground world.
#[wasm_bindgen]
pub struct Playground {
    cluster: Cluster,
}

/// The plain Rust API behind the bindings (usable and testable off the browser: `JsValue`
/// only exists inside one).
impl Playground {
    /// A world of `scenario` (see [`scenarios`]) seeded with `seed`.
    pub fn create(seed: u64, scenario: &str) -> Result<Playground, String> {
        Cluster::new(seed, scenario)
            .map(|cluster| Playground { cluster })
            .map_err(|e| e.to_string())
    }

    /// Applies one action given as JSON (`{"action":"kill_broker","id":"broker-a"}`).
    pub fn apply_json(&mut self, action_json: &str) -> Result<(), String> {
        let action: Action =
            serde_json::from_str(action_json).map_err(|e| format!("bad action: {e}"))?;
        self.cluster.apply(action).map_err(|e| e.to_string())
    }

    /// The world itself.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // The core's event and snapshot types hold only strings, numbers and maps with string
    // keys, which always serialize.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

#[wasm_bindgen]
impl Playground {
    /// `new Playground(seed, scenario)`; throws a string for an unknown scenario.
    #[wasm_bindgen(constructor)]
    pub fn construct(seed: u64, scenario: &str) -> Result<Playground, JsValue> {
        Self::create(seed, scenario).map_err(|e| JsValue::from_str(&e))
    }

    /// `Playground.new(seed, scenario)`: the same as the constructor.
    #[wasm_bindgen(js_name = "new")]
    pub fn new(seed: u64, scenario: &str) -> Result<Playground, JsValue> {
        Self::construct(seed, scenario)
    }

    /// Applies an action (JSON) at the current virtual time; its events come with the next
    /// `step` or `run_for`. Throws a string for a bad or impossible action.
    pub fn apply(&mut self, action_json: &str) -> Result<(), JsValue> {
        self.apply_json(action_json)
            .map_err(|e| JsValue::from_str(&e))
    }

    /// Advances to the next instant anything happens: a JSON array of events.
    pub fn step(&mut self) -> String {
        to_json(&self.cluster.step())
    }

    /// Runs `ms` virtual milliseconds: a JSON array of events.
    pub fn run_for(&mut self, ms: u32) -> String {
        to_json(&self.cluster.run_for(u64::from(ms)))
    }

    /// Virtual milliseconds since the world began.
    pub fn now_ms(&self) -> f64 {
        self.cluster.now_ms() as f64
    }

    /// The whole world as JSON.
    pub fn snapshot(&self) -> String {
        to_json(&self.cluster.snapshot())
    }

    /// Up to `max_records` decoded CommitLog records of `broker` from `from_offset`: JSON array.
    pub fn commitlog(&self, broker: &str, from_offset: f64, max_records: u32) -> String {
        let from = if from_offset.is_finite() && from_offset > 0.0 {
            from_offset as u64
        } else {
            0
        };
        to_json(&self.cluster.commitlog(broker, from, max_records as usize))
    }
}

/// The scenario names: a JSON array of strings.
#[wasm_bindgen]
pub fn scenarios() -> String {
    to_json(&Cluster::scenarios())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the API the page calls works off the browser too: JSON in, JSON out, errors as
    /// messages, and the same seed and actions give the same snapshot.
    #[test]
    fn playground_api_round_trip() {
        let names: Vec<String> = serde_json::from_str(&scenarios()).unwrap();
        assert_eq!(
            names,
            ["basic", "rebalance", "retry-dlq", "two-brokers", "pop"]
        );
        assert!(Playground::create(1, "nope").is_err());

        let run = || {
            let mut pg = Playground::create(7, "basic").unwrap();
            let events: Vec<serde_json::Value> = serde_json::from_str(&pg.run_for(3_000)).unwrap();
            assert!(events.iter().any(|e| e["kind"] == "sent"));
            assert!(events.iter().all(|e| e["t_ms"].as_u64().is_some()));
            pg.apply_json(r#"{"action":"add_consumer","group":"g1"}"#)
                .unwrap();
            pg.apply_json(r#"{"action":"send","count":5,"tag":"B"}"#)
                .unwrap();
            assert!(pg
                .apply_json(r#"{"action":"kill_broker","id":"broker-z"}"#)
                .is_err());
            assert!(pg.apply_json(r#"{"action":"fly"}"#).is_err());
            let step: Vec<serde_json::Value> = serde_json::from_str(&pg.step()).unwrap();
            assert!(!step.is_empty());
            pg.run_for(10_000);
            assert_eq!(
                pg.now_ms(),
                13_000.0 + step[0]["t_ms"].as_f64().unwrap() - 3_000.0
            );
            pg.snapshot()
        };
        let snapshot = run();
        assert_eq!(snapshot, run());
        let snapshot: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
        assert_eq!(snapshot["scenario"], "basic");
        let consumers = snapshot["groups"][0]["consumers"].as_array().unwrap();
        assert_eq!(consumers.len(), 3);

        let pg = {
            let mut pg = Playground::create(7, "basic").unwrap();
            pg.run_for(2_000);
            pg
        };
        let records: Vec<serde_json::Value> =
            serde_json::from_str(&pg.commitlog("broker-a", 0.0, 3)).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0]["commitlog_offset"], 0);
        assert_eq!(records[0]["topic"], "TopicTest");
        assert!(records[0]["body_preview"]
            .as_str()
            .unwrap()
            .starts_with("Hello #0"));
        assert_eq!(pg.commitlog("broker-z", 0.0, 3), "[]");
    }

    /// Goal: the `pop` scenario through the page's API: POP events come out, the snapshot
    /// shows the POP group with in-flight messages and the retry topic, and the POP actions
    /// apply.
    #[test]
    fn pop_scenario_through_the_api() {
        let mut pg = Playground::create(42, "pop").unwrap();
        let events: Vec<serde_json::Value> = serde_json::from_str(&pg.run_for(12_000)).unwrap();
        for kind in ["popped", "pop_acked", "pop_expired", "pop_revived"] {
            assert!(events.iter().any(|e| e["kind"] == kind), "no {kind}");
        }
        pg.apply_json(r#"{"action":"pop_fail_next","id":"pop-consumer-1","count":2}"#)
            .unwrap();
        pg.apply_json(r#"{"action":"add_pop_consumer","group":"pg1"}"#)
            .unwrap();
        pg.apply_json(r#"{"action":"stop_consumer","id":"pop-consumer-2"}"#)
            .unwrap();
        pg.run_for(1_000);
        let snapshot: serde_json::Value = serde_json::from_str(&pg.snapshot()).unwrap();
        let group = &snapshot["pop_groups"][0];
        assert_eq!(group["name"], "pg1");
        assert_eq!(group["retry_topic"], "%RETRY%pg1+TopicTest");
        assert_eq!(group["consumers"].as_array().unwrap().len(), 4);
        assert!(group["retry_total"].as_u64().unwrap() >= 1);
        assert!(group["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| !c["in_flight"].as_array().unwrap().is_empty()));
    }
}
