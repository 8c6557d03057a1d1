//! A minimal client of PostgreSQL's streaming replication protocol (frontend/backend protocol 3.0,
//! `replication=database`), enough for logical decoding with a text output plugin.
//!
//! Hand-written on `postgres-protocol`'s message codec because tokio-postgres has no CopyBoth support;
//! see the module docs of [`super`] for why not a third-party replication crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{self, ScramSha256};
use postgres_protocol::message::{backend, frontend};
use shared::config::{PgUrl, SslMode};
use shared::Lsn;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::config::Host;

use super::stream::{ReplicationMessage, ReplicationStream, StandbyStatus, PINNED_SETTINGS};
use super::tls;
use crate::error::CdcError;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// An error reported by the server, with its SQLSTATE.
#[derive(Debug, Clone)]
pub struct ServerError {
    pub code: String,
    pub message: String,
}

/// A replication connection. After [`PgReplicationClient::start_logical`] it is a [`ReplicationStream`].
pub struct PgReplicationClient {
    io: Box<dyn Io>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    target: String,
    streaming: bool,
    /// The connection is TLS: a password may be sent in clear text.
    encrypted: bool,
    /// `tls-server-end-point` channel-binding data of the TLS connection (SCRAM-SHA-256-PLUS).
    channel_binding: Option<Vec<u8>>,
    /// How long the stream may stay silent before the connection counts as dead (see
    /// [`PgReplicationClient::set_idle_timeout`]).
    idle_timeout: Option<Duration>,
    /// When the server last sent bytes. The silence is measured from here, not per read: the
    /// pump drops a pending read whenever another event wins its loop.
    last_heard: tokio::time::Instant,
}

/// The most plaintext one TLS record carries.
const TLS_RECORD: usize = 16 * 1024;

impl PgReplicationClient {
    /// Opens a `replication=database` connection (TLS as the URL's `sslmode` says) and
    /// authenticates. The URL's `connect_timeout` overrides `timeout`.
    pub async fn connect(url: &PgUrl, target: &str, timeout: Duration) -> Result<Self, CdcError> {
        let config = url.pg_config();
        let timeout = config.get_connect_timeout().copied().unwrap_or(timeout);
        let opened = tokio::time::timeout(timeout, open(url, target))
            .await
            .map_err(|_| CdcError::SourceUnreachable {
                target: target.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {timeout:?}"),
                ),
            })??;
        let mut client = PgReplicationClient {
            io: opened.io,
            read_buf: BytesMut::with_capacity(64 * 1024),
            write_buf: BytesMut::with_capacity(1024),
            target: target.to_owned(),
            streaming: false,
            encrypted: opened.encrypted,
            channel_binding: opened.channel_binding,
            idle_timeout: None,
            last_heard: tokio::time::Instant::now(),
        };
        tokio::time::timeout(timeout, client.startup(config))
            .await
            .map_err(|_| CdcError::SourceUnreachable {
                target: target.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer to the startup message",
                ),
            })??;
        Ok(client)
    }

    async fn startup(&mut self, config: &tokio_postgres::Config) -> Result<(), CdcError> {
        let user = config.get_user().unwrap_or("postgres");
        let database = config.get_dbname().unwrap_or(user);
        let app = config.get_application_name().unwrap_or("cascade-cdc");
        let mut params: Vec<(&str, &str)> = vec![
            ("user", user),
            ("database", database),
            ("replication", "database"),
            ("application_name", app),
        ];
        params.extend_from_slice(PINNED_SETTINGS);
        frontend::startup_message(params.iter().copied(), &mut self.write_buf).map_err(protocol)?;
        self.flush().await?;

        let password = config.get_password();
        loop {
            match self.read_backend().await? {
                backend::Message::AuthenticationOk => break,
                backend::Message::AuthenticationCleartextPassword => {
                    if !self.encrypted {
                        // A man in the middle could ask for it to learn the password.
                        return Err(CdcError::Auth("the server asks for the password in clear text over an unencrypted connection, which cdc refuses: use TLS (sslmode=require or verify-full) or scram-sha-256 authentication".into()));
                    }
                    let pw = password.ok_or_else(|| CdcError::Auth("the server asks for a password and the URL has none".into()))?;
                    frontend::password_message(pw, &mut self.write_buf).map_err(protocol)?;
                    self.flush().await?;
                }
                backend::Message::AuthenticationMd5Password(body) => {
                    let pw = password.ok_or_else(|| CdcError::Auth("the server asks for a password and the URL has none".into()))?;
                    let hash = postgres_protocol::authentication::md5_hash(user.as_bytes(), pw, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.write_buf).map_err(protocol)?;
                    self.flush().await?;
                }
                backend::Message::AuthenticationSasl(body) => {
                    let pw = password.ok_or_else(|| CdcError::Auth("the server asks for a password and the URL has none".into()))?;
                    self.scram(body, pw).await?;
                }
                backend::Message::ErrorResponse(body) => {
                    let err = server_error(&body);
                    return Err(if err.code == "28P01" || err.code == "28000" {
                        CdcError::Auth(err.message)
                    } else {
                        CdcError::Server { context: "the replication connection", message: err.message, code: err.code }
                    });
                }
                backend::Message::NoticeResponse(_) => {}
                _ => return Err(CdcError::Auth("the server asks for an authentication method cdc does not support (use scram-sha-256, md5 or password)".into())),
            }
        }
        loop {
            match self.read_backend().await? {
                backend::Message::ReadyForQuery(_) => return Ok(()),
                backend::Message::ErrorResponse(body) => {
                    let err = server_error(&body);
                    return Err(CdcError::Server {
                        context: "the replication connection",
                        message: err.message,
                        code: err.code,
                    });
                }
                _ => {}
            }
        }
    }

    async fn scram(
        &mut self,
        body: backend::AuthenticationSaslBody,
        password: &[u8],
    ) -> Result<(), CdcError> {
        let mut mechanisms = body.mechanisms();
        let mut has_scram = false;
        let mut has_plus = false;
        while let Some(m) =
            fallible_iterator::FallibleIterator::next(&mut mechanisms).map_err(protocol)?
        {
            has_scram |= m == sasl::SCRAM_SHA_256;
            has_plus |= m == sasl::SCRAM_SHA_256_PLUS;
        }
        // With TLS, bind the authentication to the TLS connection when the server can: a man in the
        // middle terminating TLS cannot relay it.
        let (mechanism, binding) = match (&self.channel_binding, has_plus) {
            (Some(data), true) => (
                sasl::SCRAM_SHA_256_PLUS,
                sasl::ChannelBinding::tls_server_end_point(data.clone()),
            ),
            (Some(_), false) if has_scram => {
                (sasl::SCRAM_SHA_256, sasl::ChannelBinding::unrequested())
            }
            (None, _) if has_scram => (sasl::SCRAM_SHA_256, sasl::ChannelBinding::unsupported()),
            _ => {
                return Err(CdcError::Auth(
                    "the server offers no SASL mechanism cdc supports (SCRAM-SHA-256, SCRAM-SHA-256-PLUS)"
                        .into(),
                ))
            }
        };
        tracing::debug!(mechanism, "authenticating the replication connection");
        let mut scram = ScramSha256::new(password, binding);
        frontend::sasl_initial_response(mechanism, scram.message(), &mut self.write_buf)
            .map_err(protocol)?;
        self.flush().await?;
        match self.read_backend().await? {
            backend::Message::AuthenticationSaslContinue(body) => scram
                .update(body.data())
                .map_err(|e| CdcError::Auth(e.to_string()))?,
            backend::Message::ErrorResponse(body) => {
                return Err(CdcError::Auth(server_error(&body).message))
            }
            _ => {
                return Err(CdcError::Protocol(
                    "unexpected message during SCRAM authentication".into(),
                ))
            }
        }
        frontend::sasl_response(scram.message(), &mut self.write_buf).map_err(protocol)?;
        self.flush().await?;
        match self.read_backend().await? {
            backend::Message::AuthenticationSaslFinal(body) => scram
                .finish(body.data())
                .map_err(|e| CdcError::Auth(e.to_string())),
            backend::Message::ErrorResponse(body) => {
                Err(CdcError::Auth(server_error(&body).message))
            }
            _ => Err(CdcError::Protocol(
                "unexpected message at the end of SCRAM authentication".into(),
            )),
        }
    }

    /// Runs `START_REPLICATION SLOT <slot> LOGICAL <start> (options)`; the connection streams afterwards.
    /// `start` 0/0 resumes at the slot's confirmed position.
    pub async fn start_logical(
        &mut self,
        slot: &str,
        start: Lsn,
        options: &[(&str, &str)],
    ) -> Result<(), ServerErrorOr> {
        let opts: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("{} '{}'", quote_ident(k), v.replace('\'', "''")))
            .collect();
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} ({})",
            quote_ident(slot),
            start,
            opts.join(", ")
        );
        frontend::query(&sql, &mut self.write_buf)
            .map_err(|e| ServerErrorOr::Other(protocol(e)))?;
        self.flush().await.map_err(ServerErrorOr::Other)?;
        loop {
            // CopyBothResponse ('W') is not in postgres-protocol's backend codec.
            if let Some(tag) = self.peek_tag().await.map_err(ServerErrorOr::Other)? {
                if tag == b'W' {
                    self.read_frame().await.map_err(ServerErrorOr::Other)?;
                    self.streaming = true;
                    return Ok(());
                }
            }
            match self.read_backend().await.map_err(ServerErrorOr::Other)? {
                backend::Message::ErrorResponse(body) => {
                    let err = server_error(&body);
                    // Drain to ReadyForQuery so the connection could be reused; ignore failures.
                    return Err(ServerErrorOr::Server(err));
                }
                backend::Message::NoticeResponse(_) | backend::Message::ParameterStatus(_) => {}
                _ => {
                    return Err(ServerErrorOr::Other(CdcError::Protocol(
                        "unexpected answer to START_REPLICATION".into(),
                    )))
                }
            }
        }
    }

    async fn fill(&mut self) -> Result<(), CdcError> {
        // Over TLS each read is offered at most one TLS record's worth of buffer: tokio-native-tls
        // zeroes the whole buffer it is offered before every read (`ReadBuf::initialize_unfilled`)
        // and OpenSSL returns at most one record (16 KiB) per read, so a larger offer only costs
        // zeroing. (The socket below reads through a 256 KiB buffer either way.)
        let window = if self.encrypted {
            TLS_RECORD
        } else {
            64 * 1024
        };
        self.read_buf.reserve(window);
        let n = self
            .io
            .read_buf(&mut (&mut self.read_buf).limit(window))
            .await
            .map_err(|e| self.unreachable(e))?;
        if n == 0 {
            return Err(self.unreachable(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        self.last_heard = tokio::time::Instant::now();
        Ok(())
    }

    async fn peek_tag(&mut self) -> Result<Option<u8>, CdcError> {
        while self.read_buf.is_empty() {
            self.fill().await?;
        }
        Ok(self.read_buf.first().copied())
    }

    /// Reads one whole frame (tag, body) without interpreting it. Cancel-safe: bytes read stay buffered.
    async fn read_frame(&mut self) -> Result<(u8, Bytes), CdcError> {
        loop {
            if self.read_buf.len() >= 5 {
                let len = u32::from_be_bytes([
                    self.read_buf[1],
                    self.read_buf[2],
                    self.read_buf[3],
                    self.read_buf[4],
                ]) as usize;
                if len < 4 {
                    return Err(CdcError::Protocol(format!("invalid message length {len}")));
                }
                if self.read_buf.len() > len {
                    let mut frame = self.read_buf.split_to(len + 1);
                    let tag = frame[0];
                    frame.advance(5);
                    return Ok((tag, frame.freeze()));
                }
                self.read_buf.reserve(len + 1 - self.read_buf.len());
            }
            self.fill().await?;
        }
    }

    async fn read_backend(&mut self) -> Result<backend::Message, CdcError> {
        loop {
            if let Some(msg) = backend::Message::parse(&mut self.read_buf).map_err(protocol)? {
                return Ok(msg);
            }
            self.fill().await?;
        }
    }

    async fn flush(&mut self) -> Result<(), CdcError> {
        let buf = self.write_buf.split();
        self.io
            .write_all(&buf)
            .await
            .map_err(|e| self.unreachable(e))?;
        self.io.flush().await.map_err(|e| self.unreachable(e))
    }

    fn unreachable(&self, source: std::io::Error) -> CdcError {
        CdcError::SourceUnreachable {
            target: self.target.clone(),
            source,
        }
    }
}

/// The outcome of a command that the server may refuse.
#[derive(Debug)]
pub enum ServerErrorOr {
    Server(ServerError),
    Other(CdcError),
}

impl PgReplicationClient {
    /// Counts the connection as dead when the stream stays silent for `timeout` (about twice the
    /// server's `wal_sender_timeout`; cdc's status reports ask the server for a reply, so a live
    /// server always says something sooner): a half-open connection is dropped and reconnected
    /// instead of hanging until the kernel gives up (~15 minutes). None: no limit.
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.idle_timeout = timeout;
    }

    async fn read_frame_within(&mut self) -> Result<(u8, Bytes), CdcError> {
        let Some(limit) = self.idle_timeout else {
            return self.read_frame().await;
        };
        match tokio::time::timeout_at(self.last_heard + limit, self.read_frame()).await {
            Ok(frame) => frame,
            Err(_) => Err(self.unreachable(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no message from the server in {limit:?} (about twice wal_sender_timeout): the connection is dead; reconnecting"
                ),
            ))),
        }
    }
}

impl ReplicationStream for PgReplicationClient {
    async fn recv(&mut self) -> Result<Option<ReplicationMessage>, CdcError> {
        loop {
            let (tag, mut body) = self.read_frame_within().await?;
            match tag {
                b'd' => {
                    if body.is_empty() {
                        return Err(CdcError::Protocol("empty CopyData".into()));
                    }
                    match body.get_u8() {
                        b'w' if body.len() >= 24 => {
                            let wal_start = Lsn(body.get_u64());
                            let wal_end = Lsn(body.get_u64());
                            let _send_time = body.get_i64();
                            return Ok(Some(ReplicationMessage::XLogData {
                                wal_start,
                                wal_end,
                                data: body,
                            }));
                        }
                        b'k' if body.len() >= 17 => {
                            let wal_end = Lsn(body.get_u64());
                            let _send_time = body.get_i64();
                            let reply_requested = body.get_u8() == 1;
                            return Ok(Some(ReplicationMessage::Keepalive {
                                wal_end,
                                reply_requested,
                            }));
                        }
                        other => {
                            return Err(CdcError::Protocol(format!(
                                "unexpected CopyData message {:?}",
                                other as char
                            )))
                        }
                    }
                }
                b'c' => {
                    self.streaming = false;
                    return Ok(None);
                }
                b'E' => {
                    let mut frame = BytesMut::with_capacity(body.len() + 5);
                    frame.put_u8(b'E');
                    frame.put_u32(body.len() as u32 + 4);
                    frame.put_slice(&body);
                    if let Some(backend::Message::ErrorResponse(err)) =
                        backend::Message::parse(&mut frame).map_err(protocol)?
                    {
                        let err = server_error(&err);
                        return Err(CdcError::Server {
                            context: "the replication stream",
                            message: err.message,
                            code: err.code,
                        });
                    }
                    return Err(CdcError::Protocol("unreadable ErrorResponse".into()));
                }
                b'N' | b'S' => continue, // notices and parameter changes
                other => {
                    return Err(CdcError::Protocol(format!(
                        "unexpected message {:?} while streaming",
                        other as char
                    )))
                }
            }
        }
    }

    async fn send_status(&mut self, status: StandbyStatus) -> Result<(), CdcError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        body.put_u64(status.written.0);
        body.put_u64(status.flushed.0);
        body.put_u64(status.applied.0);
        body.put_i64(now - PG_EPOCH_OFFSET_MICROS);
        body.put_u8(u8::from(status.reply_requested));
        self.write_buf.put_u8(b'd');
        self.write_buf.put_u32(body.len() as u32 + 4);
        self.write_buf.put_slice(&body);
        self.flush().await
    }

    async fn close(mut self) {
        if self.streaming {
            frontend::copy_done(&mut self.write_buf);
        }
        frontend::terminate(&mut self.write_buf);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
        let _ = self.io.shutdown().await;
    }
}

/// A connection opened: its stream, and what TLS it has.
struct Opened {
    io: Box<dyn Io>,
    encrypted: bool,
    channel_binding: Option<Vec<u8>>,
}

/// PostgreSQL's SSLRequest code.
const SSL_REQUEST: i32 = 80_877_103;

async fn open(url: &PgUrl, target: &str) -> Result<Opened, CdcError> {
    let config = url.pg_config();
    let ports = config.get_ports();
    let mut last = None;
    for (i, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        match host {
            Host::Tcp(h) => match tokio::net::TcpStream::connect((h.as_str(), port)).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    set_keepalive(&s, config);
                    return negotiate_tls(s, h, url, target).await;
                }
                Err(e) => last = Some(e),
            },
            #[cfg(unix)]
            Host::Unix(dir) => {
                // No TLS over a Unix socket (libpq does the same).
                let path = dir.join(format!(".s.PGSQL.{port}"));
                match tokio::net::UnixStream::connect(path).await {
                    Ok(s) => {
                        return Ok(Opened {
                            io: Box::new(s),
                            encrypted: false,
                            channel_binding: None,
                        })
                    }
                    Err(e) => last = Some(e),
                }
            }
        }
    }
    Err(CdcError::SourceUnreachable {
        target: target.to_owned(),
        source: last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no host to connect to")
        }),
    })
}

/// TCP keepalives as the URL says (`keepalives`, `keepalives_idle`, `keepalives_interval`,
/// `keepalives_retries`) and `tcp_user_timeout`, on the replication connection's socket.
fn set_keepalive(stream: &tokio::net::TcpStream, config: &tokio_postgres::Config) {
    let socket = socket2::SockRef::from(stream);
    if config.get_keepalives() {
        let mut keepalive = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
        if let Some(interval) = config.get_keepalives_interval() {
            keepalive = keepalive.with_interval(interval);
        }
        if let Some(retries) = config.get_keepalives_retries() {
            keepalive = keepalive.with_retries(retries);
        }
        if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, "cannot set TCP keepalives on the replication connection");
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(timeout) = config.get_tcp_user_timeout() {
        if let Err(e) = socket.set_tcp_user_timeout(Some(*timeout)) {
            tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT on the replication connection");
        }
    }
}

/// SSLRequest, then the TLS handshake when the server accepts, as `sslmode` asks.
async fn negotiate_tls(
    mut stream: tokio::net::TcpStream,
    host: &str,
    url: &PgUrl,
    target: &str,
) -> Result<Opened, CdcError> {
    let settings = url.tls();
    let plain = |stream: tokio::net::TcpStream| Opened {
        io: Box::new(stream),
        encrypted: false,
        channel_binding: None,
    };
    if settings.mode == SslMode::Disable {
        return Ok(plain(stream));
    }
    let unreachable = |source: std::io::Error| CdcError::SourceUnreachable {
        target: target.to_owned(),
        source,
    };
    let mut request = [0u8; 8];
    request[..4].copy_from_slice(&8i32.to_be_bytes());
    request[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
    stream.write_all(&request).await.map_err(unreachable)?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await.map_err(unreachable)?;
    match answer[0] {
        b'S' => {}
        b'N' if settings.mode == SslMode::Prefer => return Ok(plain(stream)),
        b'N' => return Err(tls::no_tls(settings)),
        other => {
            return Err(CdcError::Protocol(format!(
                "unexpected answer {:?} to the TLS request",
                other as char
            )))
        }
    }
    let connector = tokio_native_tls::TlsConnector::from(tls::connector(settings)?);
    // OpenSSL reads each TLS record in two small reads (header, then body): a buffer under it
    // turns those into few large socket reads.
    let stream = tokio::io::BufStream::with_capacity(256 * 1024, 16 * 1024, stream);
    let stream = connector.connect(host, stream).await.map_err(|e| {
        tls::configuration_fault(settings, &e.to_string()).unwrap_or_else(|| {
            unreachable(std::io::Error::other(format!("TLS handshake failed: {e}")))
        })
    })?;
    let channel_binding = stream.get_ref().tls_server_end_point().ok().flatten();
    Ok(Opened {
        io: Box::new(stream),
        encrypted: true,
        channel_binding,
    })
}

fn server_error(body: &backend::ErrorResponseBody) -> ServerError {
    let mut code = String::new();
    let mut message = String::new();
    let mut detail = String::new();
    let mut hint = String::new();
    let mut fields = body.fields();
    while let Ok(Some(field)) = fallible_iterator::FallibleIterator::next(&mut fields) {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'C' => code = value,
            b'M' => message = value,
            b'D' => detail = value,
            b'H' => hint = value,
            _ => {}
        }
    }
    if !detail.is_empty() {
        message = format!("{message} ({detail})");
    }
    if !hint.is_empty() {
        message = format!("{message}; hint: {hint}");
    }
    ServerError { code, message }
}

fn protocol(e: std::io::Error) -> CdcError {
    CdcError::Protocol(e.to_string())
}

/// Quotes an identifier for a replication command.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that asks for the password in clear text (what a man in the middle would do).
    async fn cleartext_asker() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut len = [0u8; 4];
            socket.read_exact(&mut len).await.unwrap();
            let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
            socket.read_exact(&mut startup).await.unwrap();
            let mut ask = vec![b'R'];
            ask.extend_from_slice(&8i32.to_be_bytes());
            ask.extend_from_slice(&3i32.to_be_bytes());
            socket.write_all(&ask).await.unwrap();
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
            assert!(
                !String::from_utf8_lossy(&rest).contains("s3cret"),
                "the password was sent"
            );
        });
        port
    }

    #[tokio::test]
    async fn a_clear_text_password_request_without_tls_is_refused() {
        let port = cleartext_asker().await;
        let url: PgUrl = format!("postgres://u:s3cret@127.0.0.1:{port}/db?sslmode=disable")
            .parse()
            .unwrap();
        let error = PgReplicationClient::connect(&url, "test", Duration::from_secs(5))
            .await
            .err()
            .expect("refused");
        let text = error.to_string();
        assert!(text.contains("clear text"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("cascade"), "\"cascade\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
