//! Bytes of answers the registry holds until their readers take them. An
//! answer is built whole (a `?recurse` over the KV can be megabytes) and
//! kept until the client reads it, so clients that ask and never read
//! (over many connections, or many HTTP/2 streams) would otherwise make the
//! registry hold an answer each. Every answer to an anonymous client takes
//! its size (at least 1 KiB) from one registry-wide budget until its body
//! is dropped (sent, or its connection gone); past the budget the answer is
//! a `503` at once, and nothing is held. Clients with one of the registry's
//! tokens (the nodes, `serve`'s watch) are not counted, so anonymous ones
//! holding the budget cannot starve the cluster's own reads.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Presented, Registry};

/// The budget, in KiB (a semaphore's permits), and its whole size.
#[derive(Clone)]
pub struct Budget(Arc<Semaphore>, u32);

impl Budget {
    pub fn new(bytes: usize) -> Self {
        let kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX);
        Budget(Arc::new(Semaphore::new(kib as usize)), kib)
    }
}

/// Middleware: takes the answer's size from the budget, or answers 503.
pub async fn hold(State(reg): State<Registry>, req: Request, next: Next) -> Response {
    let trusted = reg.trusted(&Presented(crate::token::presented(req.headers(), req.uri().query())));
    let resp = next.run(req).await;
    if trusted {
        return resp;
    }
    let budget = &reg.answers;
    let size = resp.body().size_hint().upper().unwrap_or(u64::MAX);
    // An answer bigger than the whole budget takes all of it.
    let kib = u32::try_from(size.div_ceil(1024).max(1)).unwrap_or(u32::MAX).min(budget.1);
    match budget.0.clone().try_acquire_many_owned(kib) {
        Ok(permit) => {
            let (parts, body) = resp.into_parts();
            Response::from_parts(parts, Body::new(Held { body, _permit: permit }))
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Registry busy: answers not yet read by their clients hold its memory budget; retry later\n",
        )
            .into_response(),
    }
}

/// A body that gives its bytes back to the budget once dropped.
struct Held {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt;

    use crate::registry::{Limits, Registry};

    async fn call(app: &axum::Router, method: &str, uri: &str, body: Vec<u8>) -> axum::response::Response {
        let req = Request::builder().method(method).uri(uri).body(axum::body::Body::from(body)).unwrap();
        app.clone().oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn big_answers_not_yet_read_hold_the_budget_and_past_it_the_answer_is_503() {
        let limits = Limits { answers: 2 * 1024 * 1024, ..Limits::default() };
        let app = Registry::with_limits(limits).with_node_token(crate::token::Token::new("node-secret")).router();
        for key in ["a", "b", "c"] {
            let put = call(&app, "PUT", &format!("/v1/kv/big/{key}"), vec![b'x'; 300 * 1024]).await;
            assert_eq!(put.status(), 200);
            drop(put);
        }
        // Each answer is about 1.2 MB of JSON (base64 values): the first is
        // held while its reader has not taken it; the next finds no room.
        let unread = call(&app, "GET", "/v1/kv/big?recurse", vec![]).await;
        assert_eq!(unread.status(), 200);
        let refused = call(&app, "GET", "/v1/kv/big?recurse", vec![]).await;
        assert_eq!(refused.status(), 503);
        // Those of a client with the registry's token are not counted.
        let req = Request::builder().uri("/v1/kv/big?recurse").header("X-Consul-Token", "node-secret");
        let trusted = app.clone().oneshot(req.body(axum::body::Body::empty()).unwrap()).await.unwrap();
        assert_eq!(trusted.status(), 200);
        // Once the first is read (or its connection gone), there is room again.
        let body = axum::body::to_bytes(unread.into_body(), usize::MAX).await.unwrap();
        assert!(body.len() > 1024 * 1024 / 2);
        assert_eq!(call(&app, "GET", "/v1/kv/big?recurse", vec![]).await.status(), 200);
    }
}
