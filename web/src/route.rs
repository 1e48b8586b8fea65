//! Hash routes (`#/`, `#/s/<scenario>?<recipe>`), so a static `dist/` works on any host
//! under any path prefix.

#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    Gallery,
    /// A deliberate panic, so the tests can see the error panel (`#/debug/panic`).
    Panic,
    /// A deliberate panic inside the simulation worker (`#/debug/worker-panic`).
    WorkerPanic,
    /// The renderer's frame-time benchmark (`#/bench/frames?n=5000`).
    FramesBench(usize),
    /// Every scenario's default run in this browser (`#/bench/engine`).
    EngineBench,
    Scenario {
        id: String,
        query: String,
    },
    NotFound(String),
}

impl Route {
    pub fn current() -> Route {
        let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
        Route::parse(&hash)
    }

    pub fn parse(hash: &str) -> Route {
        let path = hash.trim_start_matches('#');
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        match path.trim_end_matches('/') {
            "" => Route::Gallery,
            "/debug/panic" => Route::Panic,
            "/debug/worker-panic" => Route::WorkerPanic,
            "/bench/engine" => Route::EngineBench,
            "/bench/frames" => {
                let n = query.split('&').find_map(|kv| kv.strip_prefix("n=")).and_then(|v| v.parse().ok());
                Route::FramesBench(n.unwrap_or(5000).min(100_000))
            }
            p => match p.strip_prefix("/s/") {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    Route::Scenario { id: id.to_string(), query: query.to_string() }
                }
                _ => Route::NotFound(hash.to_string()),
            },
        }
    }
}

/// The hash for a scenario page with a recipe query.
pub fn scenario_href(id: &str, query: &str) -> String {
    if query.is_empty() {
        format!("#/s/{id}")
    } else {
        format!("#/s/{id}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_routes() {
        assert_eq!(Route::parse(""), Route::Gallery);
        assert_eq!(Route::parse("#/"), Route::Gallery);
        assert_eq!(Route::parse("#/s/x?seed=2"), Route::Scenario { id: "x".into(), query: "seed=2".into() });
        assert_eq!(Route::parse("#/s/x"), Route::Scenario { id: "x".into(), query: "".into() });
        assert!(matches!(Route::parse("#/nope"), Route::NotFound(_)));
        assert!(matches!(Route::parse("#/s/"), Route::NotFound(_)));
    }
}
