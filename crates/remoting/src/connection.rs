//! One remoting connection, the same on both sides: a reader task that decodes frames and either
//! completes a pending request (responses, matched by `opaque`) or runs the request handler, and a
//! writer task that drains a bounded queue and writes everything queued at once: small frames are
//! copied into one buffer, large bodies (a pull reply's stored records) are written from their own
//! buffers with vectored writes.
//!
//! Either side may send requests: a server reaches a client through the [`ConnectionHandle`] it
//! got in a [`RequestContext`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use apogee_protocol::codes::response_code::{SYSTEM_BUSY, SYSTEM_ERROR};
use apogee_protocol::command::{FLAG_ONEWAY, FLAG_RESPONSE};
use apogee_protocol::{RemotingCommand, SerializeType};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::RemotingConfig;
use crate::error::RemotingError;
use crate::handler::{HandlerFuture, RequestContext, RequestHandler};
use crate::util::{lock, panic_message, BuildIntHasher, CatchUnwind, Signal};

/// RocketMQ's remark when a request is refused because too many are being handled.
pub const OVERLOAD_REMARK: &str = "[OVERLOAD]system busy, start flow control for a while";

/// The remark of the `SYSTEM_BUSY` answer to requests that arrive while a connection drains
/// (RocketMQ clients retry `SYSTEM_BUSY` elsewhere).
pub const SHUTTING_DOWN_REMARK: &str = "[SHUTDOWN]server is shutting down, try another one";

/// Idle checks per idle timeout.
const IDLE_TICKS_PER_TIMEOUT: u32 = 4;

/// Read buffer growth step.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The writer writes once its buffer holds this much, even if more frames are queued, so one
/// batch of big frames cannot grow the buffer without bound.
const WRITE_FLUSH_BYTES: usize = 256 * 1024;
/// A write buffer that grew past this (a huge frame) is dropped after use instead of kept.
const WRITE_BUF_KEEP_BYTES: usize = 4 * 1024 * 1024;
/// Frames taken from the queue per wake-up of the writer.
const WRITE_BATCH_FRAMES: usize = 512;
/// A body at least this long is not copied into the write buffer: its chunks are written from
/// where they are (for a pull reply, the store's mapped file) with vectored writes.
const VECTORED_BODY_MIN_BYTES: usize = 8 * 1024;
/// Inside such a body, chunks shorter than this are still copied: an iovec per tiny record costs
/// more than the copy.
const VECTORED_CHUNK_MIN_BYTES: usize = 512;
/// Slices per vectored write call (well under every platform's `IOV_MAX`).
const MAX_IOVECS: usize = 64;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

type ResponseSender = oneshot::Sender<Result<RemotingCommand, RemotingError>>;

enum Outgoing {
    Command(RemotingCommand),
    /// Acknowledged once every frame queued before it has been handed to the socket.
    Flush(oneshot::Sender<()>),
}

struct PendingTable {
    map: HashMap<i32, ResponseSender, BuildIntHasher>,
    /// Set under the same lock as insertions, so no request can be registered after the table
    /// was emptied by `close`.
    closed: bool,
}

struct Shared {
    id: u64,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    config: Arc<RemotingConfig>,
    handler: Arc<dyn RequestHandler>,
    out_tx: mpsc::Sender<Outgoing>,
    /// Requests this side sent, by opaque. A std mutex: it is held for one map operation and never
    /// across an `.await`.
    pending: Mutex<PendingTable>,
    next_opaque: AtomicI32,
    /// Incoming requests whose handler has not finished or whose response is not queued yet.
    in_flight: AtomicUsize,
    in_flight_zero: Notify,
    closed: Signal,
    draining: Signal,
    /// Counts reads and writes. The idle check compares it with its previous value instead of
    /// reading the clock on every read and write.
    activity: AtomicU64,
    /// No socket behind it (see [`ConnectionHandle::detached`]).
    detached: bool,
}

/// A cheap, cloneable handle to one connection.
#[derive(Clone)]
pub struct ConnectionHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.shared.id)
            .field("peer_addr", &self.shared.peer_addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Starts the reader and writer tasks for `stream`. Must be called inside a tokio runtime.
pub(crate) fn spawn_connection(
    stream: TcpStream,
    config: Arc<RemotingConfig>,
    handler: Arc<dyn RequestHandler>,
) -> std::io::Result<ConnectionHandle> {
    // Frames are small and latency-bound; the writer already coalesces, so Nagle only adds delay.
    stream.set_nodelay(true)?;
    let peer_addr = stream.peer_addr()?;
    let local_addr = stream.local_addr()?;
    let (reader, writer) = stream.into_split();
    let (out_tx, out_rx) = mpsc::channel(config.outgoing_queue_capacity.max(1));
    let shared = Shared::new(peer_addr, local_addr, config, handler, out_tx, false);
    let handle = ConnectionHandle { shared };
    tokio::spawn(run_writer(Arc::clone(&handle.shared), out_rx, writer));
    tokio::spawn(run_reader(handle.clone(), reader));
    Ok(handle)
}

impl ConnectionHandle {
    /// A connection with no socket behind it, for running request handlers in-process (an
    /// embedded gRPC endpoint calling the broker's processors, as RocketMQ's local proxy mode
    /// does). It reports `peer_addr` and `local_addr`; requests and responses sent on it fail
    /// with [`RemotingError::ConnectionClosed`], and it closes only when told to.
    pub fn detached(peer_addr: SocketAddr, local_addr: SocketAddr) -> Self {
        let (out_tx, _) = mpsc::channel(1);
        let handler: Arc<dyn RequestHandler> =
            Arc::new(|_: RequestContext, _: RemotingCommand| HandlerFuture::no_reply());
        let config = Arc::new(RemotingConfig::default());
        let shared = Shared::new(peer_addr, local_addr, config, handler, out_tx, true);
        ConnectionHandle { shared }
    }

    /// Whether this is a [`detached`](Self::detached) handle: its requests come from in-process
    /// callers, which read a response's `body` directly, so handlers give them contiguous bodies.
    pub fn is_detached(&self) -> bool {
        self.shared.detached
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer_addr
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_fired()
    }

    /// Closes the connection now: queued frames are dropped and pending requests fail with
    /// [`RemotingError::ConnectionClosed`].
    pub fn close(&self) {
        self.shared.close("closed locally");
    }

    /// Closes gracefully: new requests are answered `SYSTEM_BUSY` instead of handled, the
    /// handlers already running finish and their responses reach the socket, then the connection
    /// closes. Responses to this side's own requests are still read meanwhile (a handler may be
    /// waiting on one). Returns at once; await [`closed`](Self::closed) for the end.
    pub fn drain(&self) {
        self.shared.draining.fire();
    }

    /// Resolves once the connection is closed, for whatever reason.
    pub async fn closed(&self) {
        self.shared.closed.wait().await;
    }

    /// Resolves once [`drain`](Self::drain) has been called.
    pub async fn draining(&self) {
        self.shared.draining.wait().await;
    }

    /// Requests this side sent and still awaits responses for.
    pub fn pending_requests(&self) -> usize {
        lock(&self.shared.pending).map.len()
    }

    /// Incoming requests being handled.
    pub fn in_flight_requests(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Sends `request` and waits up to `timeout` for the response with the same opaque.
    ///
    /// The transport assigns the opaque and clears the response and oneway flags.
    pub async fn invoke(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let s = &*self.shared;
        s.check_body_fits(&request)?;
        let opaque = s.next_opaque.fetch_add(1, Ordering::Relaxed);
        request.opaque = opaque;
        request.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        let (tx, rx) = oneshot::channel();
        {
            let mut table = lock(&s.pending);
            if table.closed {
                return Err(RemotingError::ConnectionClosed);
            }
            let limit = s.config.max_pending_requests_per_connection;
            if table.map.len() >= limit {
                return Err(RemotingError::TooManyRequests { limit });
            }
            table.map.insert(opaque, tx);
        }
        let mut guard = PendingGuard {
            shared: s,
            opaque,
            armed: true,
        };
        let exchange = async {
            s.out_tx
                .send(Outgoing::Command(request))
                .await
                .map_err(|_| RemotingError::ConnectionClosed)?;
            Ok::<_, RemotingError>(rx.await)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => {
                // Whoever completed the receiver already took the entry out of the table.
                guard.armed = false;
                answer.unwrap_or(Err(RemotingError::ConnectionClosed))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RemotingError::Timeout {
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Sends `request` with the oneway flag; no response is expected. Waits only for room in the
    /// outgoing queue.
    pub async fn invoke_oneway(&self, mut request: RemotingCommand) -> Result<(), RemotingError> {
        let s = &*self.shared;
        s.check_body_fits(&request)?;
        request.opaque = s.next_opaque.fetch_add(1, Ordering::Relaxed);
        request.flag = (request.flag & !FLAG_RESPONSE) | FLAG_ONEWAY;
        s.enqueue(request).await
    }

    /// Sends a response the caller built itself (with the request's opaque, e.g. via
    /// [`RemotingCommand::response_to`]); the response flag is set here. Handlers normally just
    /// return their response instead.
    pub async fn send_response(&self, mut response: RemotingCommand) -> Result<(), RemotingError> {
        let s = &*self.shared;
        s.check_body_fits(&response)?;
        response.flag = (response.flag | FLAG_RESPONSE) & !FLAG_ONEWAY;
        s.enqueue(response).await
    }
}

/// Takes a request out of the pending table when its `invoke` gives up (timeout, cancellation,
/// failed send), so a late response finds nothing and is dropped.
struct PendingGuard<'a> {
    shared: &'a Shared,
    opaque: i32,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.shared.pending).map.remove(&self.opaque);
        }
    }
}

impl Shared {
    fn new(
        peer_addr: SocketAddr,
        local_addr: SocketAddr,
        config: Arc<RemotingConfig>,
        handler: Arc<dyn RequestHandler>,
        out_tx: mpsc::Sender<Outgoing>,
        detached: bool,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            peer_addr,
            local_addr,
            config,
            handler,
            out_tx,
            pending: Mutex::new(PendingTable {
                map: HashMap::default(),
                closed: false,
            }),
            next_opaque: AtomicI32::new(1),
            in_flight: AtomicUsize::new(0),
            in_flight_zero: Notify::new(),
            closed: Signal::default(),
            draining: Signal::default(),
            activity: AtomicU64::new(0),
            detached,
        })
    }

    fn close(&self, reason: &str) {
        let waiting = {
            let mut table = lock(&self.pending);
            if table.closed {
                return;
            }
            table.closed = true;
            std::mem::take(&mut table.map)
        };
        self.closed.fire();
        debug!(
            id = self.id,
            peer = %self.peer_addr,
            reason,
            failed_requests = waiting.len(),
            "remoting connection closed"
        );
        for (_, tx) in waiting {
            let _ = tx.send(Err(RemotingError::ConnectionClosed));
        }
    }

    /// Cheap early refusal of a body that alone exceeds the frame limit; the writer checks the
    /// exact encoded size.
    fn check_body_fits(&self, cmd: &RemotingCommand) -> Result<(), RemotingError> {
        let max = self.config.max_frame_bytes;
        let at_least = cmd.body_len().saturating_add(8);
        if at_least > max {
            return Err(RemotingError::FrameTooLarge {
                len_bytes: at_least,
                max_bytes: max,
            });
        }
        Ok(())
    }

    async fn enqueue(&self, cmd: RemotingCommand) -> Result<(), RemotingError> {
        if self.closed.is_fired() {
            return Err(RemotingError::ConnectionClosed);
        }
        self.out_tx
            .send(Outgoing::Command(cmd))
            .await
            .map_err(|_| RemotingError::ConnectionClosed)
    }

    fn touch(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }

    /// Delivers a response to the `invoke` waiting for it, or drops it if nobody waits any more.
    fn complete(&self, response: RemotingCommand) {
        let waiter = lock(&self.pending).map.remove(&response.opaque);
        match waiter {
            Some(tx) => {
                let _ = tx.send(Ok(response));
            }
            None => debug!(
                id = self.id,
                opaque = response.opaque,
                code = response.code,
                "dropping response nobody waits for (timed out or unknown opaque)"
            ),
        }
    }

    fn release_in_flight(&self) {
        // SeqCst pairs with the drainer, which sets `draining` and then reads `in_flight`: one of
        // the two always sees the other's write, so the last release is never missed.
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.draining.is_fired() {
            self.in_flight_zero.notify_waiters();
        }
    }

    async fn wait_in_flight_zero(&self) {
        loop {
            let notified = self.in_flight_zero.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Queues a handler's response from the reader task without ever blocking the reader: when
    /// the queue is full the send moves to its own task. Blocking here could deadlock two peers
    /// that both pipeline requests at each other with full socket buffers.
    fn finish_inline(self: &Arc<Self>, response: Option<RemotingCommand>, req: RequestInfo) {
        let Some(response) = req.shape_response(response) else {
            self.release_in_flight();
            return;
        };
        match self.out_tx.try_send(Outgoing::Command(response)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => self.release_in_flight(),
            Err(mpsc::error::TrySendError::Full(item)) => {
                let shared = Arc::clone(self);
                tokio::spawn(async move {
                    let _ = shared.out_tx.send(item).await;
                    shared.release_in_flight();
                });
            }
        }
    }

    async fn finish_async(&self, response: Option<RemotingCommand>, req: RequestInfo) {
        if let Some(response) = req.shape_response(response) {
            let _ = self.out_tx.send(Outgoing::Command(response)).await;
        }
        self.release_in_flight();
    }

    /// Encodes one outgoing command into the write queue, refusing it if it does not fit a frame.
    fn encode_outgoing(&self, cmd: RemotingCommand, out: &mut WriteQueue) {
        let start = out.buf.len();
        let max = self.config.max_frame_bytes;
        let body_len = cmd.body_len();
        let encoded = if body_len < VECTORED_BODY_MIN_BYTES {
            cmd.encode(&mut out.buf).map(|()| out.buf.len() - start)
        } else {
            cmd.encode_head(&mut out.buf)
                .map(|()| out.buf.len() - start + body_len)
        };
        let error = match encoded {
            Ok(len) if len <= max => {
                if body_len >= VECTORED_BODY_MIN_BYTES {
                    for chunk in cmd.body_chunks() {
                        out.push_body_chunk(chunk);
                    }
                }
                return;
            }
            Ok(len) => RemotingError::FrameTooLarge {
                len_bytes: len,
                max_bytes: max,
            },
            Err(e) => RemotingError::from_protocol(e),
        };
        out.buf.truncate(start);
        if cmd.is_response() {
            // The requester must still hear something: an error in place of the lost response.
            warn!(id = self.id, opaque = cmd.opaque, %error, "response cannot be sent, answering SYSTEM_ERROR instead");
            let replacement = RemotingCommand::response_to(
                &cmd,
                SYSTEM_ERROR,
                Some(format!("response could not be sent: {error}")),
            );
            if replacement.encode(&mut out.buf).is_err() {
                out.buf.truncate(start);
            }
        } else if cmd.is_oneway() {
            warn!(id = self.id, code = cmd.code, %error, "oneway request dropped");
        } else if let Some(tx) = lock(&self.pending).map.remove(&cmd.opaque) {
            let _ = tx.send(Err(error));
        }
    }
}

/// What the writer has to send, in order: `parts` first, then `buf`.
///
/// Small frames and the heads of large ones are copied into `buf`; a large body's chunks join
/// `parts` as they are (after whatever `buf` held, frozen into a part of its own), so the bytes
/// on the wire are the frames' encodings in queue order.
struct WriteQueue {
    buf: BytesMut,
    parts: VecDeque<Bytes>,
    parts_bytes: usize,
}

impl WriteQueue {
    fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(64 * 1024),
            parts: VecDeque::new(),
            parts_bytes: 0,
        }
    }

    fn len(&self) -> usize {
        self.parts_bytes + self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_body_chunk(&mut self, chunk: &Bytes) {
        if chunk.len() < VECTORED_CHUNK_MIN_BYTES {
            self.buf.extend_from_slice(chunk);
            return;
        }
        self.seal_buf();
        self.parts_bytes += chunk.len();
        self.parts.push_back(chunk.clone());
    }

    /// Moves what `buf` holds to the end of `parts`; `buf` keeps its spare capacity.
    fn seal_buf(&mut self) {
        if !self.buf.is_empty() {
            let head = self.buf.split().freeze();
            self.parts_bytes += head.len();
            self.parts.push_back(head);
        }
    }

    fn clear(&mut self) {
        self.parts.clear();
        self.parts_bytes = 0;
        self.buf.clear();
        if self.buf.capacity() > WRITE_BUF_KEEP_BYTES {
            self.buf = BytesMut::with_capacity(64 * 1024);
        }
    }

    /// Writes everything queued; the queue is left empty on success.
    async fn write_to<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> std::io::Result<()> {
        if self.parts.is_empty() {
            writer.write_all(&self.buf).await?;
            self.buf.clear();
            return Ok(());
        }
        self.seal_buf();
        while !self.parts.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n_slices = 0;
            for (slot, part) in slices.iter_mut().zip(self.parts.iter()) {
                *slot = IoSlice::new(part);
                n_slices += 1;
            }
            let mut written = writer.write_vectored(&slices[..n_slices]).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.parts_bytes -= written;
            while written > 0 {
                let Some(first) = self.parts.front_mut() else {
                    break;
                };
                if written >= first.len() {
                    written -= first.len();
                    self.parts.pop_front();
                } else {
                    first.advance(written);
                    written = 0;
                }
            }
        }
        Ok(())
    }
}

/// What the transport keeps of a request while its handler runs.
#[derive(Clone, Copy)]
struct RequestInfo {
    opaque: i32,
    oneway: bool,
    serialize_type: SerializeType,
}

impl RequestInfo {
    fn of(request: &RemotingCommand) -> Self {
        Self {
            opaque: request.opaque,
            oneway: request.is_oneway(),
            serialize_type: request.serialize_type,
        }
    }

    /// Ties a handler's answer to the request; oneway requests get nothing back.
    fn shape_response(&self, response: Option<RemotingCommand>) -> Option<RemotingCommand> {
        if self.oneway {
            return None;
        }
        let mut response = response?;
        response.opaque = self.opaque;
        response.flag = (response.flag | FLAG_RESPONSE) & !FLAG_ONEWAY;
        response.serialize_type = self.serialize_type;
        Some(response)
    }

    fn panic_response(&self, payload: &(dyn std::any::Any + Send)) -> RemotingCommand {
        let message = panic_message(payload);
        warn!(opaque = self.opaque, message, "request handler panicked");
        RemotingCommand::response(
            SYSTEM_ERROR,
            Some(format!("request handler panicked: {message}")),
        )
    }
}

/// Runs the handler for one request. A handler whose future is ready on the first poll is
/// finished right here on the reader task, without a spawn; otherwise its future moves to a task.
async fn dispatch_request(conn: &ConnectionHandle, request: RemotingCommand) {
    let s = &conn.shared;
    let info = RequestInfo::of(&request);
    let refusal = if s.in_flight.load(Ordering::Relaxed) >= s.config.max_in_flight_per_connection {
        Some(OVERLOAD_REMARK)
    } else if s.draining.is_fired() {
        Some(SHUTTING_DOWN_REMARK)
    } else {
        None
    };
    if let Some(remark) = refusal {
        if !info.oneway {
            debug!(id = s.id, code = request.code, remark, "refusing request");
            let busy = RemotingCommand::response_to(&request, SYSTEM_BUSY, Some(remark.into()));
            // Waiting for queue room here is the back-pressure that stops reading from a peer
            // that floods us.
            let _ = s.out_tx.send(Outgoing::Command(busy)).await;
        }
        return;
    }
    s.in_flight.fetch_add(1, Ordering::SeqCst);
    let ctx = RequestContext::new(conn.clone());
    let handler = &s.handler;
    // The first poll uses a no-op waker: a future that is not ready is moved to a task whose
    // first poll registers the real waker.
    let first = catch_unwind(AssertUnwindSafe(|| {
        let mut fut = handler.handle(ctx, request);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut fut).poll(&mut cx) {
            Poll::Ready(response) => Ok(response),
            Poll::Pending => Err(fut),
        }
    }));
    match first {
        Ok(Ok(response)) => s.finish_inline(response, info),
        Ok(Err(fut)) => {
            let shared = Arc::clone(s);
            tokio::spawn(async move {
                let response = match CatchUnwind::<HandlerFuture>(fut).await {
                    Ok(response) => response,
                    Err(payload) => Some(info.panic_response(&*payload)),
                };
                shared.finish_async(response, info).await;
            });
        }
        Err(payload) => {
            let response = info.panic_response(&*payload);
            s.finish_inline(Some(response), info);
        }
    }
}

async fn run_reader(conn: ConnectionHandle, mut reader: OwnedReadHalf) {
    let s = Arc::clone(&conn.shared);
    let max_frame_bytes = s.config.max_frame_bytes;
    let idle_timeout = s.config.idle_timeout();
    let mut bufs = ReadBuffers::new();
    let closed = s.closed.wait();
    tokio::pin!(closed);
    // Resolves once a drain was asked for and the last running handler has finished.
    let drained = async {
        s.draining.wait().await;
        s.wait_in_flight_zero().await;
    };
    tokio::pin!(drained);
    // The idle check runs a few times per timeout and closes after that many quiet checks in a row,
    // so a connection closes after between 1 and 1.25 idle timeouts without traffic.
    let idle_tick = idle_timeout.unwrap_or(Duration::from_secs(3600)) / IDLE_TICKS_PER_TIMEOUT;
    let idle = tokio::time::sleep(idle_tick);
    tokio::pin!(idle);
    let mut seen_activity = 0;
    let mut quiet_ticks = 0;
    loop {
        loop {
            match RemotingCommand::decode_frame(&mut bufs.buf, max_frame_bytes) {
                Ok(Some(cmd)) if cmd.is_response() => s.complete(cmd),
                Ok(Some(cmd)) => dispatch_request(&conn, cmd).await,
                Ok(None) => break,
                Err(e) => {
                    warn!(id = s.id, peer = %s.peer_addr, error = %e, "malformed frame, closing connection");
                    s.close("malformed frame");
                    return;
                }
            }
        }
        bufs.reserve_for_next_frame(max_frame_bytes);
        tokio::select! {
            biased;
            _ = &mut closed => return,
            _ = &mut drained => {
                let (ack_tx, ack_rx) = oneshot::channel();
                if s.out_tx.send(Outgoing::Flush(ack_tx)).await.is_ok() {
                    let _ = ack_rx.await;
                }
                s.close("drained");
                return;
            }
            _ = &mut idle, if idle_timeout.is_some() => {
                let activity = s.activity.load(Ordering::Relaxed);
                let busy = s.in_flight.load(Ordering::Relaxed) > 0
                    || !lock(&s.pending).map.is_empty();
                if busy || activity != seen_activity {
                    quiet_ticks = 0;
                    seen_activity = activity;
                } else {
                    quiet_ticks += 1;
                    if quiet_ticks >= IDLE_TICKS_PER_TIMEOUT {
                        s.close("idle");
                        return;
                    }
                }
                idle.as_mut().reset(Instant::now() + idle_tick);
            }
            read = reader.read_buf(&mut bufs.buf) => match read {
                Ok(0) => {
                    s.close("peer closed");
                    return;
                }
                Ok(_) => s.touch(),
                Err(e) => {
                    debug!(id = s.id, error = %e, "read failed");
                    s.close("read error");
                    return;
                }
            },
        }
    }
}

/// The read buffer and the ones it replaced while frames decoded from them were still in use.
///
/// Decoded frames share the read buffer (a body is a slice of it), so a buffer cannot be written
/// again while any of them lives. When it runs out of room the reader moves on to a spare whose
/// frames are all gone (or a new one) and parks the old one, instead of allocating a buffer per
/// large frame and freeing it when the frame is dropped.
struct ReadBuffers {
    buf: BytesMut,
    /// Size of `buf`'s allocation.
    buf_alloc: usize,
    /// Parked buffers with their allocation sizes.
    spares: Vec<(BytesMut, usize)>,
}

/// Parked read buffers kept per connection.
const READ_SPARES: usize = 4;
/// Read buffers larger than this (made for one huge frame) are not kept.
const READ_KEEP_BYTES: usize = 1024 * 1024;

impl ReadBuffers {
    fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            buf_alloc: READ_CHUNK_BYTES,
            spares: Vec::new(),
        }
    }

    /// Makes room for at least the rest of the frame at the front of the buffer (bounded by the
    /// frame limit, which the decoder enforces), or a read chunk.
    fn reserve_for_next_frame(&mut self, max_frame_bytes: usize) {
        let buf = &mut self.buf;
        let mut want = READ_CHUNK_BYTES;
        if let Some(prefix) = buf.get(..4) {
            let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
            if let Ok(len) = usize::try_from(len) {
                let total = len.saturating_add(4).min(max_frame_bytes);
                want = want.max(total.saturating_sub(buf.len()));
            }
        }
        if buf.capacity() - buf.len() >= want / 2 {
            return;
        }
        // Every frame of this buffer is gone: reuse it in place (the partial frame moves to the
        // front).
        if buf.try_reclaim(want) {
            return;
        }
        let need = buf.len() + want;
        let free = self.spares.iter_mut().position(|(spare, alloc)| {
            spare.clear();
            *alloc >= need && spare.try_reclaim(need)
        });
        let (mut next, next_alloc) = match free {
            Some(i) => self.spares.swap_remove(i),
            None => {
                let alloc = need.max(READ_CHUNK_BYTES);
                (BytesMut::with_capacity(alloc), alloc)
            }
        };
        next.extend_from_slice(&self.buf);
        let old = std::mem::replace(&mut self.buf, next);
        let old_alloc = std::mem::replace(&mut self.buf_alloc, next_alloc);
        if old_alloc <= READ_KEEP_BYTES && self.spares.len() < READ_SPARES {
            self.spares.push((old, old_alloc));
        }
    }
}

async fn run_writer(
    s: Arc<Shared>,
    mut queue: mpsc::Receiver<Outgoing>,
    mut writer: OwnedWriteHalf,
) {
    let closed = s.closed.wait();
    tokio::pin!(closed);
    let mut out = WriteQueue::new();
    let mut batch = Vec::with_capacity(WRITE_BATCH_FRAMES);
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    'run: loop {
        let received = tokio::select! {
            biased;
            _ = &mut closed => break 'run,
            n = queue.recv_many(&mut batch, WRITE_BATCH_FRAMES) => n,
        };
        if received == 0 {
            break;
        }
        for item in batch.drain(..) {
            match item {
                Outgoing::Command(cmd) => s.encode_outgoing(cmd, &mut out),
                Outgoing::Flush(ack) => acks.push(ack),
            }
            if out.len() >= WRITE_FLUSH_BYTES
                && !write_out(&s, &mut writer, &mut out, &mut closed).await
            {
                break 'run;
            }
        }
        if !out.is_empty() && !write_out(&s, &mut writer, &mut out, &mut closed).await {
            break;
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    s.close("writer stopped");
    // Dropping the write half sends FIN; the queue is dropped with it, failing blocked senders.
}

/// Writes and clears `out`; false when the connection is closed or the write failed.
async fn write_out<C: Future<Output = ()> + Unpin>(
    s: &Shared,
    writer: &mut OwnedWriteHalf,
    out: &mut WriteQueue,
    closed: &mut C,
) -> bool {
    let result = tokio::select! {
        biased;
        _ = closed => return false,
        r = out.write_to(writer) => r,
    };
    out.clear();
    match result {
        Ok(()) => {
            s.touch();
            true
        }
        Err(e) => {
            debug!(id = s.id, error = %e, "write failed");
            s.close("write error");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `limit` bytes per write call, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        limit: usize,
        vectored_calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.limit);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.vectored_calls += 1;
            let mut room = self.limit;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room);
                self.out.extend_from_slice(&b[..take]);
                room -= take;
                n += take;
                if room == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn shared() -> Arc<Shared> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        ConnectionHandle::detached(addr, addr).shared
    }

    /// Small replies, a pull-like reply of 200 records (some under the copy threshold) and a
    /// contiguous large body, in one batch.
    fn frames() -> Vec<RemotingCommand> {
        let records: Vec<Bytes> = (0..200u32)
            .map(|i| Bytes::from(vec![i as u8; if i % 7 == 0 { 100 } else { 1100 }]))
            .collect();
        let mut pull = RemotingCommand::response(0, Some("FOUND".into())).with_body_chunks(records);
        pull.ext_fields.insert("nextBeginOffset", "200");
        pull.opaque = 2;
        vec![
            RemotingCommand::response(0, None).with_opaque(1),
            pull,
            RemotingCommand::response(0, None)
                .with_opaque(3)
                .with_body(&b"small"[..]),
            RemotingCommand::response(0, None)
                .with_opaque(4)
                .with_body(vec![9u8; 70_000])
                .with_serialize_type(SerializeType::RocketMq),
            RemotingCommand::response(0, None).with_opaque(5),
        ]
    }

    #[tokio::test]
    async fn queued_frames_reach_the_wire_as_their_contiguous_encoding_despite_partial_writes() {
        let s = shared();
        let mut expected = Vec::new();
        for cmd in frames() {
            let mut c = cmd.clone();
            c.make_body_contiguous();
            expected.extend_from_slice(&c.to_bytes().unwrap());
        }
        for limit in [1, 7, 1000, 4096, 65_536, usize::MAX] {
            let mut out = WriteQueue::new();
            for cmd in frames() {
                s.encode_outgoing(cmd, &mut out);
            }
            assert_eq!(out.len(), expected.len());
            let mut sink = Trickle {
                out: Vec::new(),
                limit,
                vectored_calls: 0,
            };
            out.write_to(&mut sink).await.unwrap();
            out.clear();
            assert!(out.is_empty());
            assert!(sink.out == expected, "limit {limit}");
            assert!(sink.vectored_calls > 0, "large bodies go out vectored");
        }
    }

    #[tokio::test]
    async fn large_body_chunks_are_not_copied_into_the_write_buffer() {
        let s = shared();
        let mut out = WriteQueue::new();
        let record = Bytes::from(vec![1u8; 4096]);
        let cmd = RemotingCommand::response(0, None).with_body_chunks(vec![
            record.clone(),
            record.clone(),
            record.clone(),
        ]);
        s.encode_outgoing(cmd, &mut out);
        // The head was sealed into a part of its own, followed by the three records as they are.
        assert_eq!(out.parts.len(), 4);
        assert!(out.buf.is_empty());
        for part in out.parts.iter().skip(1) {
            assert_eq!(part.as_ptr(), record.as_ptr());
        }
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_frame_limit_is_replaced_by_an_error_response() {
        let s = shared();
        let max = s.config.max_frame_bytes;
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        let n = max / chunk.len() + 1;
        let cmd = RemotingCommand::response(0, None)
            .with_opaque(9)
            .with_body_chunks(vec![chunk; n]);
        let mut out = WriteQueue::new();
        s.encode_outgoing(cmd, &mut out);
        assert!(out.parts.is_empty());
        let mut buf = out.buf.clone();
        let reply = RemotingCommand::decode_frame(&mut buf, max)
            .unwrap()
            .unwrap();
        assert_eq!((reply.code, reply.opaque), (SYSTEM_ERROR, 9));
        assert!(buf.is_empty());
    }

    fn frame_with_body(opaque: i32, len: usize) -> Bytes {
        RemotingCommand::response(0, None)
            .with_opaque(opaque)
            .with_body(vec![opaque as u8; len])
            .to_bytes()
            .unwrap()
    }

    #[test]
    fn read_buffers_are_reused_once_their_frames_are_dropped() {
        let max = crate::config::RemotingConfig::default().max_frame_bytes;
        let mut rb = ReadBuffers::new();
        let first = rb.buf.as_ptr();
        rb.buf.extend_from_slice(&frame_with_body(1, 40_000));
        let a = RemotingCommand::decode_frame(&mut rb.buf, max)
            .unwrap()
            .unwrap();
        // The body is a slice of the read buffer, not a copy.
        assert!((first as usize..first as usize + READ_CHUNK_BYTES)
            .contains(&(a.body.as_ptr() as usize)));
        rb.reserve_for_next_frame(max);
        // `a` still uses the first buffer: the reader moved on to another one.
        assert_ne!(rb.buf.as_ptr(), first);
        assert_eq!(rb.spares.len(), 1);
        drop(a);
        rb.buf.extend_from_slice(&frame_with_body(2, 40_000));
        let b = RemotingCommand::decode_frame(&mut rb.buf, max)
            .unwrap()
            .unwrap();
        assert_eq!(b.body.len(), 40_000);
        rb.reserve_for_next_frame(max);
        // The first buffer is free again and taken back instead of a new allocation.
        assert_eq!(rb.buf.as_ptr(), first);
        assert_eq!(rb.spares.len(), 1);
        assert!(b.body.iter().all(|&x| x == 2));
    }

    #[test]
    fn a_partial_frame_survives_the_move_to_another_read_buffer() {
        let max = crate::config::RemotingConfig::default().max_frame_bytes;
        let mut rb = ReadBuffers::new();
        let whole = frame_with_body(1, 40_000);
        let next = frame_with_body(2, 100_000);
        rb.buf.extend_from_slice(&whole);
        rb.buf.extend_from_slice(&next[..10_000]);
        let a = RemotingCommand::decode_frame(&mut rb.buf, max)
            .unwrap()
            .unwrap();
        rb.reserve_for_next_frame(max);
        assert!(rb.buf.capacity() >= next.len());
        rb.buf.extend_from_slice(&next[10_000..]);
        let b = RemotingCommand::decode_frame(&mut rb.buf, max)
            .unwrap()
            .unwrap();
        assert_eq!((a.opaque, b.opaque), (1, 2));
        assert_eq!(b.body.len(), 100_000);
        assert!(rb.buf.is_empty());
    }
}
