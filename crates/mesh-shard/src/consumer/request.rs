//! What the call loop needs from a request, whatever protocol brought it in: the keys of its call policy,
//! what the routers see of it, and how to write it for an upstream connection. The HTTP form's
//! [`mesh_http::Invocation`] (`form_call`) and a Dubbo client's frame (`dubbo_call`) implement it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mesh_dubbo::{Codec, CodecError};

use super::routes::Call as RouteCall;

/// A request the call loop can route and send.
pub(super) trait CallRequest {
    /// The interface name: the call policy's and the rate limiter's key, with [`CallRequest::method`].
    fn interface(&self) -> &str;

    fn method(&self) -> &str;

    /// Calls `route` with what the routers see of the call to the service key `service`, excluding the
    /// providers `exclude`.
    fn route<T>(&self, service: &str, exclude: &[SocketAddr], route: impl FnOnce(&RouteCall<'_>) -> T) -> T;

    /// Writes the whole request frame for an upstream connection, with that connection's request id `id`.
    /// `token`: Dubbo's `token` attachment the chosen provider expects, if any; `timeout`: the call's
    /// timeout (Dubbo's `timeout` attachment, which bounds the provider agent's wait).
    fn encode(
        &self,
        codec: &Codec,
        buf: &mut BytesMut,
        id: u64,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(), CodecError>;
}
