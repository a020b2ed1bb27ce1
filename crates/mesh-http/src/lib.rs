//! Pure HTTP/1.1 request framing (httparse) and form decoding into Dubbo invocations; response writing
