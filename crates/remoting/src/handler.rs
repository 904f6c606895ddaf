//! Request handlers: what the transport runs for each incoming request, and the [`Router`] that
//! picks one by request code.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use apogee_protocol::codes::response_code::REQUEST_CODE_NOT_SUPPORTED;
use apogee_protocol::RemotingCommand;

use crate::connection::ConnectionHandle;
use crate::util::BuildIntHasher;

/// Handles requests arriving on a connection.
///
/// The returned future resolves to the response, or `None` for no reply. The transport fills in
/// the response's `opaque`, response flag and serialize type (that of the request), and never
/// replies to a oneway request. A panic in `handle` or in the future is caught and answered with
/// `SYSTEM_ERROR`; the connection stays up.
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, ctx: RequestContext, request: RemotingCommand) -> HandlerFuture;
}

impl<F> RequestHandler for F
where
    F: Fn(RequestContext, RemotingCommand) -> HandlerFuture + Send + Sync + 'static,
{
    fn handle(&self, ctx: RequestContext, request: RemotingCommand) -> HandlerFuture {
        self(ctx, request)
    }
}

impl RequestHandler for Arc<dyn RequestHandler> {
    fn handle(&self, ctx: RequestContext, request: RemotingCommand) -> HandlerFuture {
        (**self).handle(ctx, request)
    }
}

/// What a handler returns: either an answer that is ready now (no allocation, no task) or a boxed
/// future the transport drives on its own task.
pub struct HandlerFuture {
    inner: Inner,
}

type BoxedReply = Pin<Box<dyn Future<Output = Option<RemotingCommand>> + Send + 'static>>;

enum Inner {
    Ready(Option<Option<RemotingCommand>>),
    Boxed(BoxedReply),
}

impl HandlerFuture {
    /// An asynchronous handler body.
    pub fn new<F>(fut: F) -> Self
    where
        F: Future<Output = Option<RemotingCommand>> + Send + 'static,
    {
        Self {
            inner: Inner::Boxed(Box::pin(fut)),
        }
    }

    /// An answer known right away (`None`: no reply).
    pub fn ready(response: Option<RemotingCommand>) -> Self {
        Self {
            inner: Inner::Ready(Some(response)),
        }
    }

    /// Reply with `response` right away.
    pub fn reply(response: RemotingCommand) -> Self {
        Self::ready(Some(response))
    }

    /// Send nothing back.
    pub fn no_reply() -> Self {
        Self::ready(None)
    }
}

impl From<RemotingCommand> for HandlerFuture {
    fn from(response: RemotingCommand) -> Self {
        Self::reply(response)
    }
}

impl Future for HandlerFuture {
    type Output = Option<RemotingCommand>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            // Polling again after completion yields "no reply" instead of panicking.
            Inner::Ready(slot) => Poll::Ready(slot.take().flatten()),
            Inner::Boxed(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for HandlerFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Ready(_) => f.write_str("HandlerFuture::Ready"),
            Inner::Boxed(_) => f.write_str("HandlerFuture::Boxed"),
        }
    }
}

/// What a handler knows about where a request came from. The connection handle can be kept to
/// send the peer requests later (a broker remembering a consumer's channel, for instance).
#[derive(Clone, Debug)]
pub struct RequestContext {
    connection: ConnectionHandle,
}

impl RequestContext {
    pub(crate) fn new(connection: ConnectionHandle) -> Self {
        Self { connection }
    }

    /// A context for calling a handler in-process, over a
    /// [`ConnectionHandle::detached`] connection from `peer_addr`.
    pub fn detached(peer_addr: SocketAddr, local_addr: SocketAddr) -> Self {
        Self::new(ConnectionHandle::detached(peer_addr, local_addr))
    }

    /// The connection the request arrived on.
    pub fn connection(&self) -> &ConnectionHandle {
        &self.connection
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.connection.peer_addr()
    }

    /// Whether the request came from an in-process caller rather than a socket (see
    /// [`ConnectionHandle::is_detached`]).
    pub fn is_detached(&self) -> bool {
        self.connection.is_detached()
    }
}

/// Maps request codes to handlers. A code without a handler goes to the fallback, or, without one,
/// is answered `REQUEST_CODE_NOT_SUPPORTED` the way RocketMQ does.
#[derive(Clone, Default)]
pub struct Router {
    routes: HashMap<i32, Arc<dyn RequestHandler>, BuildIntHasher>,
    fallback: Option<Arc<dyn RequestHandler>>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `code` to `handler`, replacing an earlier route for the same code.
    pub fn route(mut self, code: i32, handler: impl RequestHandler) -> Self {
        self.routes.insert(code, Arc::new(handler));
        self
    }

    /// Routes every code in `codes` to one shared handler (a processor serving a family of codes).
    pub fn route_many(mut self, codes: &[i32], handler: Arc<dyn RequestHandler>) -> Self {
        for &code in codes {
            self.routes.insert(code, Arc::clone(&handler));
        }
        self
    }

    /// The handler for codes without a route.
    pub fn fallback(mut self, handler: impl RequestHandler) -> Self {
        self.fallback = Some(Arc::new(handler));
        self
    }

    pub fn has_route(&self, code: i32) -> bool {
        self.routes.contains_key(&code)
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut codes: Vec<_> = self.routes.keys().copied().collect();
        codes.sort_unstable();
        f.debug_struct("Router")
            .field("codes", &codes)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl RequestHandler for Router {
    fn handle(&self, ctx: RequestContext, request: RemotingCommand) -> HandlerFuture {
        match self.routes.get(&request.code).or(self.fallback.as_ref()) {
            Some(handler) => handler.handle(ctx, request),
            None => HandlerFuture::reply(not_supported(&request)),
        }
    }
}

/// RocketMQ's answer to an unknown request code (the leading space is theirs).
pub fn not_supported(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(
        request,
        REQUEST_CODE_NOT_SUPPORTED,
        Some(format!(" request type {} not supported", request.code)),
    )
}
