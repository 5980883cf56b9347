//! The edge every request passes through on its way to a handler: the cap on the
//! body's size, a deadline for the body and one for the answer (on a single timer), the
//! count of the intake's requests in flight, the answer's time by route, method and
//! status, and a debug span.
//!
//! Written as one tower service rather than stacked from tower-http's limit, timeout
//! and trace layers and axum's `from_fn` for the rest: that stack cost about 2.5 µs
//! per request (`BENCHMARKS.md`, "The router's edge"), a tenth of the intake's CPU on
//! the path that writes nothing. Most of it went to a timer per layer, set up and torn
//! down on every request (the body's timeout even set a new one per frame), to a boxed
//! future per layer, and to building the metric's labels anew for every answer. Here an
//! answer ready at its first poll never touches the timer, one timer serves both
//! deadlines, and each (route, method, status) finds its histogram once.

use crate::pipeline::load::{InFlight, IntakeLoad};
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The limits every request is held to.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Largest body accepted; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// Time a client has, from the end of its headers, to send the whole body; past it
    /// the request is answered 408.
    pub body_time: Duration,
    /// Time the whole request may take; past it the request is answered 408.
    pub answer_time: Duration,
}

/// Puts [`Edge`] in front of a router's routes (`Router::layer`).
#[derive(Clone)]
pub struct EdgeLayer {
    shared: Arc<Shared>,
}

/// What every copy of the edge shares.
struct Shared {
    limits: EdgeLimits,
    /// The intake's load, for routes of the intake (their requests count as in flight).
    intake: Option<Arc<IntakeLoad>>,
    timings: AnswerTimings,
}

impl EdgeLayer {
    /// An edge with `limits`; `intake`, when given, counts each request in flight.
    pub fn new(limits: EdgeLimits, intake: Option<Arc<IntakeLoad>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                intake,
                timings: AnswerTimings::default(),
            }),
        }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The edge in front of one route; see the module's documentation.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> tower::Service<Request> for Edge<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let limits = self.shared.limits;
        let in_flight = self.shared.intake.as_ref().map(IntakeLoad::enter);
        let span =
            tracing::debug_span!("request", method = %request.method(), uri = %request.uri());
        let label = AnswerLabel {
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: method_label(request.method()),
        };
        let answer_deadline = started + limits.answer_time;
        let too_large =
            declared_length(&request).is_some_and(|length| length > limits.max_body_bytes as u64);
        // A body still to come gets its deadline; one already whole (a GET) needs none.
        let (inner, body_arrived) = if too_large {
            (None, None)
        } else if request.body().is_end_stream() {
            (Some(self.inner.call(request)), None)
        } else {
            let (parts, body) = request.into_parts();
            let arrived = Arc::new(AtomicBool::new(false));
            let body = Body::new(EdgeBody {
                inner: http_body_util::Limited::new(body, limits.max_body_bytes),
                arrived: arrived.clone(),
            });
            let inner = self.inner.call(Request::from_parts(parts, body));
            (Some(inner), Some(arrived))
        };
        let timer_at_body = body_arrived.is_some() && limits.body_time < limits.answer_time;
        let first_deadline = if timer_at_body {
            started + limits.body_time
        } else {
            answer_deadline
        };
        EdgeFuture {
            inner,
            timer: tokio::time::sleep_until(first_deadline),
            timer_at_body,
            body_arrived,
            answer_deadline,
            started,
            label,
            shared: self.shared.clone(),
            span,
            _in_flight: in_flight,
        }
    }
}

/// The body's length as its `Content-Length` declares it, when it does.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large_answer() -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response()
}

fn too_slow() -> Response {
    (StatusCode::REQUEST_TIMEOUT, "request took too long").into_response()
}

pin_project_lite::pin_project! {
    /// A request on its way through [`Edge`].
    pub struct EdgeFuture<F> {
        // None when the request was refused before it reached the route (its body is
        // over the cap).
        #[pin]
        inner: Option<F>,
        // Created with the request, armed only once the route's answer is not ready at
        // once: at the body's deadline while the body is still to come, then at the
        // answer's.
        #[pin]
        timer: Sleep,
        timer_at_body: bool,
        body_arrived: Option<Arc<AtomicBool>>,
        answer_deadline: Instant,
        started: Instant,
        label: AnswerLabel,
        shared: Arc<Shared>,
        span: tracing::Span,
        _in_flight: Option<InFlight>,
    }
}

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let response = match this.inner.as_mut().as_pin_mut() {
            None => too_large_answer(),
            Some(inner) => match inner.poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => loop {
                    ready!(this.timer.as_mut().poll(cx));
                    let body_done = this
                        .body_arrived
                        .as_ref()
                        .is_none_or(|arrived| arrived.load(Ordering::Acquire));
                    if *this.timer_at_body && body_done {
                        // The body came in time: the answer's own deadline now.
                        *this.timer_at_body = false;
                        this.timer.as_mut().reset(*this.answer_deadline);
                        continue;
                    }
                    tracing::debug!(body_done, "request cut off at its deadline");
                    // Dropping the route's future now ends its work (and the body).
                    this.inner.set(None);
                    break too_slow();
                },
            },
        };
        let status = response.status();
        let elapsed = this.started.elapsed();
        this.shared.timings.record(this.label, status, elapsed);
        tracing::debug!(
            status = status.as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "answered"
        );
        Poll::Ready(Ok(response))
    }
}

pin_project_lite::pin_project! {
    /// A request body held to the size cap, that says when it has all arrived.
    struct EdgeBody {
        #[pin]
        inner: http_body_util::Limited<Body>,
        arrived: Arc<AtomicBool>,
    }
}

impl HttpBody for EdgeBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // The end, or an error that ends it: nothing more is waited for.
            this.arrived.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What an answer's time is recorded under, besides its status.
struct AnswerLabel {
    /// The route's pattern (so that ids never become labels); none for a path no route
    /// matched.
    route: Option<MatchedPath>,
    method: &'static str,
}

/// The answer-time histograms met so far, one per (route, method, status). Their number
/// is bounded: the routes and the statuses are the router's, and a method outside the
/// standard ones is recorded as `other`, so a client cannot make up new series.
#[derive(Default)]
struct AnswerTimings {
    known: RwLock<Vec<(String, &'static str, u16, metrics::Histogram)>>,
}

impl AnswerTimings {
    fn record(&self, label: &AnswerLabel, status: StatusCode, elapsed: Duration) {
        let route = label
            .route
            .as_ref()
            .map_or("unmatched", MatchedPath::as_str);
        let status = status.as_u16();
        let found = |known: &[(String, &'static str, u16, metrics::Histogram)]| {
            known
                .iter()
                .find(|(r, m, s, _)| *s == status && *m == label.method && r == route)
                .map(|(_, _, _, histogram)| histogram.clone())
        };
        let histogram = match self.known.read().ok().and_then(|known| found(&known)) {
            Some(histogram) => histogram,
            None => {
                let histogram =
                    crate::telemetry::http_answer_histogram(route, label.method, status);
                if let Ok(mut known) = self.known.write()
                    && found(&known).is_none()
                {
                    known.push((route.to_owned(), label.method, status, histogram.clone()));
                }
                histogram
            }
        };
        histogram.record(elapsed.as_secs_f64());
    }
}

/// The method as a label: a standard method by its name, any other as `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::load::BUSY_AT;
    use futures_util::StreamExt;
    use tower::{Layer, ServiceExt};

    const LIMITS: EdgeLimits = EdgeLimits {
        max_body_bytes: 64,
        body_time: Duration::from_secs(5),
        answer_time: Duration::from_secs(8),
    };

    /// A route that reads the whole body, then takes `think` to answer 200 (or never).
    fn route(
        think: Option<Duration>,
    ) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone
    {
        tower::service_fn(move |request: Request| async move {
            // As the handlers read it: a body past the cap is answered 413.
            if let Err(rejection) =
                <Bytes as axum::extract::FromRequest<()>>::from_request(request, &()).await
            {
                return Ok(rejection.into_response());
            }
            match think {
                Some(think) => tokio::time::sleep(think).await,
                None => std::future::pending().await,
            }
            Ok::<_, Infallible>(StatusCode::OK.into_response())
        })
    }

    /// Sends `body` through the edge to `route`; the answer's status and when it came.
    async fn send(
        route: impl tower::Service<Request, Response = Response, Error = Infallible>,
        body: Body,
    ) -> (StatusCode, Duration) {
        let started = Instant::now();
        let request = Request::post("/github/webhook")
            .body(body)
            .unwrap_or_default();
        let Ok(answer) = EdgeLayer::new(LIMITS, None)
            .layer(route)
            .oneshot(request)
            .await;
        (answer.status(), started.elapsed())
    }

    /// A body that sends one byte a second, `bytes` times.
    fn dripping(bytes: u64) -> Body {
        Body::from_stream(futures_util::stream::unfold(0, move |sent| async move {
            (sent < bytes).then_some(())?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), sent + 1))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_never_comes_is_cut_off_at_the_answer_time() {
        let (status, after) = send(route(None), Body::from("{}")).await;
        assert_eq!(
            (status, after),
            (StatusCode::REQUEST_TIMEOUT, LIMITS.answer_time)
        );
        let (status, after) = send(route(None), Body::empty()).await;
        assert_eq!(
            (status, after),
            (StatusCode::REQUEST_TIMEOUT, LIMITS.answer_time)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_cut_off_at_the_body_time() {
        let stalled =
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        let (status, after) = send(route(Some(Duration::ZERO)), stalled).await;
        assert_eq!(
            (status, after),
            (StatusCode::REQUEST_TIMEOUT, LIMITS.body_time)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_body_time_counts_the_whole_body_not_the_gaps_between_its_parts() {
        // A byte a second never leaves a long gap, but ten take longer than the body time.
        let (status, after) = send(route(Some(Duration::ZERO)), dripping(10)).await;
        assert_eq!(
            (status, after),
            (StatusCode::REQUEST_TIMEOUT, LIMITS.body_time)
        );
        // Three arrive in time.
        let (status, after) = send(route(Some(Duration::ZERO)), dripping(3)).await;
        assert_eq!((status, after), (StatusCode::OK, Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_in_time_leaves_the_route_until_the_answer_time() {
        let slow = Duration::from_secs(7);
        let (status, after) = send(route(Some(slow)), Body::from("{}")).await;
        assert_eq!((status, after), (StatusCode::OK, slow));
        let (status, after) = send(route(None), dripping(2)).await;
        assert_eq!(
            (status, after),
            (StatusCode::REQUEST_TIMEOUT, LIMITS.answer_time)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_over_the_cap_is_refused_declared_or_not() {
        let reached = Arc::new(AtomicBool::new(false));
        let watched = tower::service_fn({
            let reached = reached.clone();
            move |_: Request| {
                reached.store(true, Ordering::SeqCst);
                async { Ok::<_, Infallible>(StatusCode::OK.into_response()) }
            }
        });
        let request = Request::post("/github/webhook")
            .header(header::CONTENT_LENGTH, "65")
            .body(Body::from(vec![b'x'; 65]))
            .unwrap_or_default();
        let Ok(answer) = EdgeLayer::new(LIMITS, None)
            .layer(watched)
            .oneshot(request)
            .await;
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!reached.load(Ordering::SeqCst), "the route never saw it");
        // Undeclared (chunked): the route reads up to the cap and no further.
        let chunks = futures_util::stream::iter(0..10)
            .map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&[b'x'; 10])));
        let (status, _) = send(route(Some(Duration::ZERO)), Body::from_stream(chunks)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, _) = send(route(Some(Duration::ZERO)), Body::from(vec![b'x'; 64])).await;
        assert_eq!(status, StatusCode::OK, "exactly the cap is accepted");
    }

    #[tokio::test(start_paused = true)]
    async fn the_intake_s_requests_count_as_in_flight_until_answered() {
        let load = Arc::new(IntakeLoad::default());
        let intake = EdgeLayer::new(LIMITS, Some(load.clone()));
        let think = Duration::from_secs(1);
        let requests: Vec<_> = (0..BUSY_AT)
            .map(|_| {
                let request = Request::post("/slack/commands")
                    .body(Body::from("text=hi"))
                    .unwrap_or_default();
                // Counted from the call on (the route is always ready).
                tokio::spawn(tower::Service::call(
                    &mut intake.layer(route(Some(think))),
                    request,
                ))
            })
            .collect();
        assert!(load.is_busy(), "requests being answered count");
        for request in requests {
            assert!(matches!(request.await, Ok(Ok(answer)) if answer.status() == StatusCode::OK));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!load.is_busy(), "answered requests no longer count");
    }

    #[test]
    fn a_made_up_method_is_recorded_as_other() {
        let made_up = axum::http::Method::from_bytes(b"FROB").unwrap_or_default();
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&axum::http::Method::POST), "POST");
    }
}
