//! The pure cluster: scenarios run, faults have their RocketMQ consequences, and a seed plus
//! timed actions replays exactly.

use std::collections::BTreeMap;

use super::*;

fn kinds(events: &[Event]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        let json = serde_json::to_value(e).unwrap();
        *out.entry(json["kind"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    out
}

#[test]
fn explore_basic() {
    let mut c = Cluster::new(1, "basic").unwrap();
    let events = c.run_for(10_000);
    println!("{:?}", kinds(&events));
    for e in events
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::Message { .. }))
        .take(60)
    {
        println!("{}", serde_json::to_string(e).unwrap());
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&c.snapshot().groups).unwrap()
    );
}
