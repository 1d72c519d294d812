//! `vramguard plan BYTES`: asks a running worker (`vramguard serve`) whether `BYTES` more would
//! fit, through its `/plan` endpoint, and prints the answer. Changes nothing anywhere.
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::error::{Error, Result};
use crate::purpose::Purpose;

use super::units::parse_bytes;

/// How long the whole question may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `vramguard plan`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The bytes to fit, e.g. 2GiB.
    #[arg(value_parser = parse_bytes)]
    pub bytes: u64,
    /// Their purpose: ModelWeights (a model slot: budget and eviction apply) or another purpose
    /// (a plain buffer, judged against the device).
    #[arg(long, default_value = "ModelWeights")]
    pub purpose: Purpose,
    /// The worker's endpoint, host:port.
    #[arg(long, default_value = "127.0.0.1:9400")]
    pub address: String,
}

/// The worker's answer (the JSON of [`FitPlan`](crate::health::FitPlan)). Errors: VRAM-E017 when
/// the worker cannot be reached or does not answer in time, the worker's own error (VRAM-E003,
/// VRAM-E007) for a refused question.
pub fn run(args: &PlanArgs) -> Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start a runtime: {e}")))?;
    let path = format!("/plan?bytes={}&purpose={}", args.bytes, args.purpose);
    let (status, body) = runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, get(&args.address, &path)).await })
        .map_err(|_| Error::Io(format!("{} did not answer within {TIMEOUT:?}", args.address)))??;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Error::Io(format!("{} answered {status} with something not JSON: {e}", args.address)))?;
    if status != 200 {
        let message = json["error"]["message"].as_str().unwrap_or("the worker refused the question");
        return Err(Error::InvalidArgument(format!("{}: {message}", args.address)));
    }
    Ok(json)
}

/// `GET path` on `address` over one HTTP/1.1 connection: the status and the body.
async fn get(address: &str, path: &str) -> Result<(u16, Bytes)> {
    let io = |what: &str, e: &dyn std::fmt::Display| Error::Io(format!("{what} {address}: {e}"));
    let stream = tokio::net::TcpStream::connect(address).await.map_err(|e| io("cannot connect to", &e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| io("cannot talk to", &e))?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(hyper::header::HOST, address)
        .body(Empty::<Bytes>::new())
        .map_err(|e| Error::Internal(format!("cannot build the request: {e}")))?;
    let response = sender.send_request(request).await.map_err(|e| io("no answer from", &e))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| io("answer cut short from", &e))?.to_bytes();
    Ok((status, body))
}
