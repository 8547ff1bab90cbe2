//! OTLP/gRPC: TraceService, MetricsService and LogsService on one listener. Messages are
//! taken as raw bytes and decoded by the same code as OTLP/HTTP, so an undecodable
//! message is INVALID_ARGUMENT (tonic's generated codec would answer INTERNAL).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};

use super::decode::{self, RpcStatus};
use super::{Encoding, ExportError, Payload, Signal, export};
use crate::api::SharedState;
use crate::pipeline::SubmitError;

/// Passes message bytes through untouched, both ways.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// One of the three OTLP gRPC services.
pub trait GrpcSignal: Send + Sync + 'static {
    const SERVICE: &'static str;
    const SIGNAL: Signal;
}

pub struct TraceRpc;
pub struct MetricsRpc;
pub struct LogsRpc;

impl GrpcSignal for TraceRpc {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const SIGNAL: Signal = Signal::Traces;
}
impl GrpcSignal for MetricsRpc {
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const SIGNAL: Signal = Signal::Metrics;
}
impl GrpcSignal for LogsRpc {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const SIGNAL: Signal = Signal::Logs;
}

/// A status clients retry after `secs`: RetryInfo in the details (OTLP's way) and in the
/// `google.rpc.retryinfo-bin` trailer (what some SDKs read).
fn retryable(code: Code, message: String, secs: u64) -> Status {
    let details = RpcStatus::new(code as i32, message.clone(), Some(secs)).encode_to_vec();
    let mut s = Status::with_details(code, message, details.into());
    s.metadata_mut().insert_bin(
        "google.rpc.retryinfo-bin",
        MetadataValue::from_bytes(&decode::retry_info(secs)),
    );
    s
}

pub fn status_of(e: ExportError) -> Status {
    match e {
        ExportError::Decode(d) => Status::invalid_argument(d.to_string()),
        ExportError::Submit(SubmitError::Full) => {
            retryable(Code::ResourceExhausted, e.to_string(), 1)
        }
        ExportError::Submit(_) | ExportError::ShuttingDown => {
            retryable(Code::Unavailable, e.to_string(), 5)
        }
    }
}

/// The API's bearer token, from the `authorization` metadata.
fn authorize(st: &SharedState, md: &MetadataMap) -> Result<(), Status> {
    let Some(token) = st.config.api.auth_token.as_deref() else {
        return Ok(());
    };
    let given = md
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        Some(g) if crate::api::constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(Status::unauthenticated("missing or wrong bearer token")),
    }
}

struct ExportCall<S> {
    st: SharedState,
    _signal: PhantomData<S>,
}

impl<S: GrpcSignal> UnaryService<Bytes> for ExportCall<S> {
    type Response = Vec<u8>;
    type Future = BoxFuture<tonic::Response<Vec<u8>>, Status>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let st = self.st.clone();
        Box::pin(async move {
            authorize(&st, req.metadata())?;
            // The message is read (within OCT_MAX_BODY_BYTES); its parse takes budget.
            let mut permit = st.admission.permit();
            if !permit.grow(req.get_ref().len() * crate::api::admission::PARSE_FACTOR) {
                return Err(retryable(
                    Code::ResourceExhausted,
                    "too many bytes in flight (OCT_MAX_INFLIGHT_BYTES); retry shortly".into(),
                    1,
                ));
            }
            let done = export(&st, S::SIGNAL, Payload::Protobuf(req.get_ref()))
                .await
                .map_err(status_of)?;
            Ok(tonic::Response::new(decode::response(
                S::SIGNAL,
                &done,
                Encoding::Protobuf,
            )))
        })
    }
}

/// The gRPC service for one signal; only its `Export` method exists.
pub struct OtlpService<S> {
    st: SharedState,
    max_message_bytes: usize,
    _signal: PhantomData<S>,
}

impl<S> Clone for OtlpService<S> {
    fn clone(&self) -> Self {
        OtlpService {
            st: self.st.clone(),
            max_message_bytes: self.max_message_bytes,
            _signal: PhantomData,
        }
    }
}

impl<S: GrpcSignal> OtlpService<S> {
    pub fn new(st: SharedState, max_message_bytes: usize) -> Self {
        OtlpService {
            st,
            max_message_bytes,
            _signal: PhantomData,
        }
    }
}

impl<S: GrpcSignal> NamedService for OtlpService<S> {
    const NAME: &'static str = S::SERVICE;
}

impl<S, B> Service<http::Request<B>> for OtlpService<S>
where
    S: GrpcSignal,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let is_export = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(S::SERVICE))
            == Some("/Export");
        if !is_export {
            return Box::pin(async move {
                Ok(Status::unimplemented("only Export is served").into_http())
            });
        }
        let st = self.st.clone();
        let max = self.max_message_bytes;
        // Refused before the message is read when the queue or the in-flight budget is full.
        if !st.pipeline.has_room(1, 0) || !st.admission.has_room(1) {
            let s = retryable(
                Code::ResourceExhausted,
                "the queue or the in-flight budget is full; retry shortly".into(),
                1,
            );
            return Box::pin(async move { Ok(s.into_http()) });
        }
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = Grpc::new(RawCodec)
                .apply_compression_config(gzip, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max), None);
            let call = ExportCall::<S> {
                st,
                _signal: PhantomData,
            };
            Ok(grpc.unary(call, req).await)
        })
    }
}

/// Concurrent calls (HTTP/2 streams) on one gRPC connection, at most.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;

/// Serves the three services on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    st: SharedState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let max = st.config.api.max_body_bytes as usize;
    // Connections capped (OCT_MAX_CONNECTIONS), and calls at once on each: a client
    // cannot open more streams than this to hold messages in memory.
    let incoming = crate::api::admission::grpc_incoming(listener, st.admission.clone());
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .add_service(OtlpService::<TraceRpc>::new(st.clone(), max))
        .add_service(OtlpService::<MetricsRpc>::new(st.clone(), max))
        .add_service(OtlpService::<LogsRpc>::new(st, max))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
