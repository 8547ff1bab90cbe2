//! The dashboard's front-end: the static files in `web/`, embedded in the binary and served on
//! the API's port. `/` is the shell (`index.html`, never cached, pointing at the assets'
//! content-hashed path); `/ui/<hash>/<file>` are the assets, cached for a year as
//! immutable, gzip-compressed once at first use when the client accepts gzip.
//!
//! The shell and its assets are public (they hold no data): with `OCT_AUTH_TOKEN` set the
//! page shows only its login view until the user gives the token, which the scripts send
//! as `Authorization: Bearer` to the JSON API. Every answer carries a Content-Security-Policy
//! that allows only this origin's scripts, styles and connections and no framing.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use super::SharedState;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// The policy every dashboard answer carries: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One asset, ready to send.
struct Asset {
    mime: &'static str,
    raw: Vec<u8>,
    /// Present when compressing saved at least a tenth.
    gzip: Option<Vec<u8>>,
}

struct Bundle {
    /// First 12 hex digits of a SHA-256 over every asset's path and bytes.
    hash: String,
    index: Asset,
    assets: HashMap<String, Asset>,
}

static BUNDLE: LazyLock<Bundle> = LazyLock::new(build_bundle);

fn mime_for(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" | "LICENSE" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn gzip(raw: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(raw).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < raw.len() - raw.len() / 10).then_some(out)
}

fn asset(path: &str, raw: Vec<u8>) -> Asset {
    Asset {
        mime: mime_for(path),
        gzip: gzip(&raw),
        raw,
    }
}

fn build_bundle() -> Bundle {
    let mut names: Vec<String> = Assets::iter().map(|p| p.into_owned()).collect();
    names.sort();
    let mut hasher = Sha256::new();
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let Some(file) = Assets::get(&name) else {
            continue;
        };
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(&file.data);
        files.push((name, file.data.into_owned()));
    }
    let digest = hasher.finalize();
    let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let mut index = None;
    let mut assets = HashMap::new();
    for (name, raw) in files {
        if name == "index.html" {
            let html = String::from_utf8_lossy(&raw).replace("__UI__", &format!("/ui/{hash}"));
            index = Some(asset(&name, html.into_bytes()));
        } else {
            assets.insert(name.clone(), asset(&name, raw));
        }
    }
    let index = index.unwrap_or_else(|| {
        asset(
            "index.html",
            b"<!doctype html><title>openclaw-trace</title><p>dashboard assets missing".to_vec(),
        )
    });
    Bundle {
        hash,
        index,
        assets,
    }
}

/// True for the paths served without a token: the shell and its assets hold no data.
pub fn is_public(path: &str) -> bool {
    path == "/" || path == "/index.html" || path.starts_with("/ui/")
}

/// The content hash in the assets' path (changes whenever any asset does).
pub fn asset_hash() -> &'static str {
    &BUNDLE.hash
}

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/ui/{hash}/{*path}", get(ui_asset))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.trim().split(';');
            let coding = it.next().unwrap_or("").trim();
            let q_zero = it.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

/// The security headers every dashboard answer carries.
pub fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn send(a: &Asset, headers: &HeaderMap, cache: &'static str, etag: Option<&str>) -> Response {
    if let Some(tag) = etag
        && headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        return secure(r);
    }
    let (body, gz) = match &a.gzip {
        Some(g) if accepts_gzip(headers) => (g.clone(), true),
        _ => (a.raw.clone(), false),
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gz {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(tag) = etag
        && let Ok(v) = HeaderValue::from_str(tag)
    {
        h.insert(header::ETAG, v);
    }
    secure(r)
}

async fn index(headers: HeaderMap) -> Response {
    let b = &*BUNDLE;
    let etag = format!("\"{}\"", b.hash);
    send(&b.index, &headers, "no-cache", Some(&etag))
}

async fn ui_asset(Path((hash, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let b = &*BUNDLE;
    match b.assets.get(path.as_str()) {
        // Only the current hash is immutable; an old page asking for an old hash gets the
        // current file, not cached, so a reload picks up the new shell.
        Some(a) if hash == b.hash => send(a, &headers, "public, max-age=31536000, immutable", None),
        Some(a) => send(a, &headers, "no-cache", None),
        None => secure(
            super::ApiError::new(StatusCode::NOT_FOUND, "no such dashboard file").into_response(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br;q=1, gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn bundle_has_shell_and_hashed_paths() {
        let b = &*BUNDLE;
        assert_eq!(b.hash.len(), 12);
        let html = String::from_utf8_lossy(&b.index.raw);
        assert!(html.contains(&format!("/ui/{}/app.js", b.hash)));
        assert!(!html.contains("__UI__"));
        assert!(b.assets.contains_key("app.js"));
        // Every module app.js imports is preloaded, so a first visit fetches them at once.
        for name in b
            .assets
            .keys()
            .filter(|n| n.ends_with(".js") && *n != "app.js")
        {
            assert!(
                html.contains(&format!("href=\"/ui/{}/{name}\"", b.hash)),
                "index.html lacks <link rel=modulepreload> for {name}"
            );
        }
        assert!(is_public("/") && is_public("/ui/x/app.js") && !is_public("/v1/traces"));
    }
}
