//! An alert webhook on loopback that records what it accepts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A webhook on loopback that records what it accepts.
pub struct FakeWebhook {
    pub url: String,
    pub attempts: Arc<Mutex<u32>>,
    pub received: Arc<Mutex<Vec<Value>>>,
    _rt: tokio::runtime::Runtime,
}

/// Fails its first request with 500.
pub fn fake_webhook() -> FakeWebhook {
    fake_webhook_on(0, true)
}

/// On `port` (0: any), failing its first request when `fail_first`.
pub fn fake_webhook_on(port: u16, fail_first: bool) -> FakeWebhook {
    use axum::http::StatusCode;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let attempts = Arc::new(Mutex::new(0u32));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (a, r) = (attempts.clone(), received.clone());
    // A given port was free a moment ago, but another process (or the daemon's own
    // retry, connecting to itself on loopback) may hold it for a while: try again.
    let until = Instant::now() + Duration::from_secs(15);
    let listener = loop {
        match rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))) {
            Ok(l) => break l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("cannot listen on port {port}: {e}"),
        }
    };
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let (a, r) = (a.clone(), r.clone());
            async move {
                let n = {
                    let mut n = a.lock().unwrap();
                    *n += 1;
                    *n
                };
                if n == 1 && fail_first {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                r.lock().unwrap().push(body);
                StatusCode::OK
            }
        }),
    );
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeWebhook {
        url: format!("http://{addr}/hook?token=secret-token"),
        attempts,
        received,
        _rt: rt,
    }
}
