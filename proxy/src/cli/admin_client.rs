//! A minimal client for the admin API, used by `portcullis mode`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::mode::Mode;

/// The bearer token: from `file`, else from `PORTCULLIS_ADMIN_TOKEN`, else none.
pub fn token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(file) = file {
        let token = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the token file {}", file.display()))?;
        return Ok(Some(token.trim().to_owned()));
    }
    Ok(std::env::var("PORTCULLIS_ADMIN_TOKEN")
        .ok()
        .filter(|token| !token.is_empty()))
}

/// `GET /mode`, or `PUT /mode` when `mode` is given; returns the response body.
pub async fn mode(
    admin: SocketAddr,
    mode: Option<Mode>,
    token: Option<&str>,
) -> anyhow::Result<String> {
    let (method, body) = match mode {
        Some(mode) => (Method::PUT, mode.as_str().to_owned()),
        None => (Method::GET, String::new()),
    };
    request(admin, method, "/mode", body, token).await
}

async fn request(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: String,
    token: Option<&str>,
) -> anyhow::Result<String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(admin)
            .await
            .with_context(|| format!("cannot reach the admin API at {admin}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);

        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, admin.to_string());
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = response.status();
        let text =
            String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
        if !status.is_success() {
            bail!("the admin API answered {status}: {}", text.trim());
        }
        Ok(text)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("the admin API did not answer within 10 s")?
}
