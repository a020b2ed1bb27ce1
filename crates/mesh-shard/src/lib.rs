//! glommio thread-per-core runtime: listeners, upstream pools, request-id maps
