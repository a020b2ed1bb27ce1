//! Which answer an admin request gets, from its method and path alone.
//!
//! | path | method | answer |
//! |---|---|---|
//! | `/metrics` | GET | Prometheus text exposition |
//! | `/ready` | GET | 200 when registered and serving, 503 before the first snapshot and while draining |
//! | `/live` | GET | 200 while the process runs |
//! | `/registry` | GET | the registry snapshot and route tables as JSON |
//! | `/config` | GET | the effective configuration as JSON, secrets redacted |
//! | `/drain` | POST | starts the same drain as SIGTERM |
//!
//! HEAD is answered like GET (without a body). A query string is ignored.

/// An admin request the agent answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Ready,
    Live,
    Registry,
    Config,
    Drain,
}

/// Why a request gets no answer of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 404: no such path.
    NotFound,
    /// 405: the path exists for other methods (`allow` lists them, for the `Allow` header).
    MethodNotAllowed { allow: &'static str },
}

impl Refusal {
    /// The HTTP status and its reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::NotFound => (404, "Not Found"),
            Refusal::MethodNotAllowed { .. } => (405, "Method Not Allowed"),
        }
    }
}

impl Route {
    /// Every route with its path, for listings (the 404 body names them).
    pub const ALL: [(Route, &'static str); 6] = [
        (Route::Metrics, "/metrics"),
        (Route::Ready, "/ready"),
        (Route::Live, "/live"),
        (Route::Registry, "/registry"),
        (Route::Config, "/config"),
        (Route::Drain, "/drain"),
    ];

    /// Whether the route changes the agent (then only POST).
    pub fn is_action(self) -> bool {
        self == Route::Drain
    }
}

/// The route for `method` and `path` (its query string ignored).
pub fn route(method: &str, path: &str) -> Result<Route, Refusal> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let (route, _) = Route::ALL
        .iter()
        .find(|(_, p)| *p == path)
        .ok_or(Refusal::NotFound)?;
    let allowed = if route.is_action() {
        method == "POST"
    } else {
        method == "GET" || method == "HEAD"
    };
    if allowed {
        Ok(*route)
    } else {
        Err(Refusal::MethodNotAllowed {
            allow: if route.is_action() { "POST" } else { "GET, HEAD" },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_methods() {
        assert_eq!(route("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(route("HEAD", "/metrics"), Ok(Route::Metrics));
        assert_eq!(route("GET", "/metrics?name[]=x"), Ok(Route::Metrics));
        assert_eq!(route("GET", "/ready/"), Ok(Route::Ready));
        assert_eq!(route("GET", "/live"), Ok(Route::Live));
        assert_eq!(route("GET", "/registry"), Ok(Route::Registry));
        assert_eq!(route("GET", "/config"), Ok(Route::Config));
        assert_eq!(route("POST", "/drain"), Ok(Route::Drain));
        assert_eq!(
            route("GET", "/drain"),
            Err(Refusal::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route("POST", "/metrics"),
            Err(Refusal::MethodNotAllowed { allow: "GET, HEAD" })
        );
        assert_eq!(route("GET", "/"), Err(Refusal::NotFound));
        assert_eq!(route("GET", "/metricsx"), Err(Refusal::NotFound));
        assert_eq!(route("GET", "metrics"), Err(Refusal::NotFound));
        assert_eq!(Refusal::NotFound.status(), (404, "Not Found"));
    }
}
