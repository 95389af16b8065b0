//! The API's operations as a table of path templates, read from the OpenAPI document, so that a
//! request is matched to its route before any layer runs. Metrics then label every outcome —
//! injected faults, shed load, timeouts and 413s included — with the route template, a 405
//! lists the allowed methods, and fault injection hits operations only.

use std::sync::Arc;

use poem::http::{HeaderValue, Method};

/// One path template and the methods it serves.
#[derive(Debug)]
pub struct RouteEntry {
    /// The OpenAPI path, like `/api/v1/delay/{ms}`: the `route` label of metrics and logs.
    pub template: Arc<str>,
    segments: Vec<Segment>,
    methods: Vec<Method>,
    allow: HeaderValue,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
}

impl RouteEntry {
    /// Whether the route serves `method`.
    pub fn serves(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }

    /// The methods it serves.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// The value of the `Allow` header of a 405 answer.
    pub fn allow(&self) -> &HeaderValue {
        &self.allow
    }

    fn matches(&self, path: &str) -> bool {
        let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
        let matched = self
            .segments
            .iter()
            .all(|segment| match (segment, parts.next()) {
                (Segment::Literal(literal), Some(part)) => literal == part,
                (Segment::Parameter, Some(part)) => !part.is_empty(),
                (_, None) => false,
            });
        matched && parts.next().is_none()
    }
}

/// Every API operation's route.
#[derive(Debug, Default)]
pub struct RouteTable(Vec<Arc<RouteEntry>>);

impl RouteTable {
    /// The table of an OpenAPI document (its `paths` object).
    pub fn from_openapi(spec: &serde_json::Value) -> Self {
        let mut routes = Vec::new();
        for (path, operations) in spec["paths"].as_object().into_iter().flatten() {
            let methods: Vec<Method> = operations
                .as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .filter_map(|m| m.to_uppercase().parse().ok())
                .collect();
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let segments = match path.as_str() {
                "/" => Vec::new(),
                path => path
                    .trim_start_matches('/')
                    .split('/')
                    .map(|s| match s.starts_with('{') && s.ends_with('}') {
                        true => Segment::Parameter,
                        false => Segment::Literal(s.to_owned()),
                    })
                    .collect(),
            };
            routes.push(Arc::new(RouteEntry {
                template: Arc::from(path.as_str()),
                segments,
                methods,
                allow: HeaderValue::from_str(&allow).expect("method names are valid header text"),
            }));
        }
        Self(routes)
    }

    /// A table of fixed paths, each with its methods (the admin listener's).
    pub fn from_paths(paths: &[(&str, &[Method])]) -> Self {
        let routes = paths
            .iter()
            .map(|(path, methods)| {
                let allow = methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                Arc::new(RouteEntry {
                    template: Arc::from(*path),
                    segments: path
                        .trim_start_matches('/')
                        .split('/')
                        .map(|s| Segment::Literal(s.to_owned()))
                        .collect(),
                    methods: methods.to_vec(),
                    allow: HeaderValue::from_str(&allow)
                        .expect("method names are valid header text"),
                })
            })
            .collect();
        Self(routes)
    }

    /// Every route, in table order.
    pub fn entries(&self) -> std::slice::Iter<'_, Arc<RouteEntry>> {
        self.0.iter()
    }

    /// The route `path` belongs to, if any.
    pub fn resolve(&self, path: &str) -> Option<&Arc<RouteEntry>> {
        self.position(path).map(|(_, entry)| entry)
    }

    /// The route `path` belongs to and its place in [`RouteTable::entries`].
    pub fn position(&self, path: &str) -> Option<(usize, &Arc<RouteEntry>)> {
        let mut entries = self.0.iter().enumerate();
        if path == "/" {
            return entries.find(|(_, r)| r.segments.is_empty());
        }
        entries.find(|(_, r)| !r.segments.is_empty() && r.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn table() -> RouteTable {
        RouteTable::from_openapi(&json!({"paths": {
            "/": {"get": {}},
            "/api/v1/echo": {"post": {}},
            "/api/v1/delay/{ms}": {"get": {}, "head": {}},
        }}))
    }

    #[test]
    fn paths_resolve_to_their_template() {
        let table = table();
        let template = |path| table.resolve(path).map(|r| r.template.to_string());
        assert_eq!(template("/").as_deref(), Some("/"));
        assert_eq!(
            template("/api/v1/delay/250").as_deref(),
            Some("/api/v1/delay/{ms}")
        );
        assert_eq!(template("/api/v1/echo").as_deref(), Some("/api/v1/echo"));
        assert_eq!(template("/api/v1/delay/"), None);
        assert_eq!(template("/api/v1/delay/1/2"), None);
        assert_eq!(template("/api/v1"), None);
    }

    #[test]
    fn a_route_knows_its_methods() {
        let table = table();
        let delay = table.resolve("/api/v1/delay/1").unwrap();
        assert!(delay.serves(&Method::GET) && !delay.serves(&Method::POST));
        assert_eq!(delay.allow(), "GET, HEAD");
    }
}
