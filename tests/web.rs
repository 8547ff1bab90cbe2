//! The dashboard's static files as the binary serves them: the shell and its hashed
//! assets, caching, compression, security headers, and what a token protects.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;

fn raw_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_gzip()
        .build()
        .unwrap()
}

fn asset_path(html: &str, file: &str) -> String {
    let end = html
        .find(&format!("/{file}\""))
        .expect("asset in index.html");
    let start = html[..end].rfind("/ui/").expect("/ui/ path");
    format!("{}/{file}", &html[start..end])
}

#[test]
fn shell_and_assets_are_cached_by_content_hash_compressed_and_locked_down() {
    let d = Daemon::start(&[]);
    let c = raw_client();
    let r = c.get(d.url("/")).send().unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(h.get("content-encoding").is_none(), "no gzip unless asked");
    let etag = h["etag"].to_str().unwrap().to_string();
    let html = r.text().unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "nothing inline"
    );
    let js = asset_path(&html, "app.js");
    let hash = js.split('/').nth(2).unwrap().to_string();
    assert_eq!(hash.len(), 12);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));

    // Unchanged shell: 304.
    let r = c
        .get(d.url("/"))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);

    // The hashed asset: immutable, gzip when accepted, the same bytes either way.
    let r = c
        .get(d.url(&js))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let gz = r.bytes().unwrap();
    let mut plain_from_gz = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut plain_from_gz)
        .unwrap();
    let plain = c.get(d.url(&js)).send().unwrap().text().unwrap();
    assert_eq!(plain, plain_from_gz);
    assert!(gz.len() < plain.len());
    assert!(plain.contains("import"));

    // Another hash (a page from an older binary): the current file, not cached for long.
    let r = c.get(d.url("/ui/000000000000/app.js")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    // Unknown files: 404 JSON, still with the headers.
    let r = c.get(d.url(&format!("/ui/{hash}/nope.js"))).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let r = c
        .get(d.url(&format!("/ui/{hash}/../Cargo.toml")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn with_a_token_the_shell_loads_but_no_data_does() {
    let d = Daemon::start(&[("OCT_AUTH_TOKEN", "s3cret")]);
    let c = raw_client();
    let html = c.get(d.url("/")).send().unwrap();
    assert_eq!(html.status(), 200);
    let html = html.text().unwrap();
    assert!(!html.contains("s3cret"));
    let css = asset_path(&html, "app.css");
    assert_eq!(c.get(d.url(&css)).send().unwrap().status(), 200);
    for path in ["/v1/traces", "/v1/overview", "/v1/stream", "/v1/usage"] {
        assert_eq!(c.get(d.url(path)).send().unwrap().status(), 401, "{path}");
    }
    let r = c
        .get(d.url("/v1/traces"))
        .bearer_auth("s3cret")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
