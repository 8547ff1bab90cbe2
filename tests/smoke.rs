mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn starts_ingests_and_stops_cleanly() {
    let mut d = Daemon::start(&[]);
    let r = post_json(
        &d.url("/v1/traces"),
        &json!({"provider":"openai","model":"gpt-4o","prompt_tokens":3}),
    );
    assert_eq!(r.status(), 202);
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 1, Duration::from_secs(5)),
        1
    );
    assert!(d.stop().success());
}
