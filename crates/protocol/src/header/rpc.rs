//! The optional fields Java's `RpcRequestHeader` / `TopicRequestHeader` add to most requests. A
//! broker may ignore them; a processor that needs them (static topics, a proxy) decodes this header
//! from the same extFields as the command's own header.

crate::command_header! {
    /// `ns`, `nsd`, `bname`, `oway`, `lo`.
    pub struct RpcRequestHeader {
        /// Namespace.
        namespace: Option<String> => "ns",
        /// Whether names are already namespaced.
        namespaced: Option<bool> => "nsd",
        /// Target broker name.
        broker_name: Option<String> => "bname",
        /// Sent oneway.
        oneway: Option<bool> => "oway",
        /// Logical (static topic) request.
        logical: Option<bool> => "lo",
    }
}
