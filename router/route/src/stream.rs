//! Reading the YAML configuration and compiling it in the same pass, a route at a time.
//!
//! A table of a thousand routes is small once compiled, but the parsed [`Config`] it is built
//! from is not, and what an allocator keeps after freeing it stays resident below the table.
//! So [`Table::from_yaml`] never holds the parsed routes: a first pass reads the backends (the
//! rules refer to them by name) and reads each route only to check it, dropping it at once; a
//! second pass hands each route to the compiler as soon as it is parsed, writes it to the
//! `/config` JSON and drops it. The result is the same as [`Table::compile`] of
//! [`Config::from_yaml`] (a test and the config fuzz target check that both ways agree).

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize,
    de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};

use crate::{
    Backend, CompileError, Config, Route, Table,
    compile::{JsonDeflater, TableBuilder},
};

/// The first pass: the backends kept, the routes read one by one and dropped (so the file is
/// checked exactly as [`Config::from_yaml`] checks it, without holding the routes), any other
/// key refused.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BackendsOnly {
    #[serde(default, rename = "routes", deserialize_with = "each_route")]
    _routes: (),
    #[serde(default)]
    backends: Vec<Backend>,
}

fn each_route<'de, D: de::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    Each::<Route>(PhantomData).deserialize(d)
}

/// A list read one element at a time, each dropped once read: the types are checked as a
/// `Vec<T>` would check them, and nothing is kept.
struct Each<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Each<T> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Each<T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<T>()?.is_some() {}
        Ok(())
    }
}

impl Table {
    /// Parses a YAML configuration and compiles it, route by route (see the module's notes).
    /// Errors are those of [`Config::from_yaml`] and [`Table::compile`].
    pub fn from_yaml(text: &str) -> Result<Table, String> {
        let BackendsOnly { backends, .. } =
            serde_saphyr::from_str_with_options(text, options(text)).map_err(yaml_error)?;
        let mut builder = TableBuilder::new(backends).map_err(|e| e.to_string())?;
        let mut json = JsonDeflater::new();
        json.raw("{\"routes\":[").map_err(|e| e.to_string())?;
        let mut failed = None;
        let parsed =
            serde_saphyr::with_deserializer_from_str_with_options(text, options(text), |de| {
                RoutesPass(Routes {
                    builder: &mut builder,
                    json: &mut json,
                    failed: &mut failed,
                })
                .deserialize(de)
            });
        if let Some(e) = failed {
            return Err(e.to_string());
        }
        parsed.map_err(yaml_error)?;
        json.raw("],\"backends\":").map_err(|e| e.to_string())?;
        json.value(&builder.backends()).map_err(|e| e.to_string())?;
        json.raw("}").map_err(|e| e.to_string())?;
        Ok(builder.finish(json.finish().map_err(|e| e.to_string())?))
    }
}

impl Config {
    /// Parses a YAML configuration. Errors name the line and the field.
    pub fn from_yaml(text: &str) -> Result<Config, String> {
        serde_saphyr::from_str_with_options(text, options(text)).map_err(yaml_error)
    }
}

/// The parser's settings: errors on one line (the file's place, no quoted snippet), and
/// limits on nodes and events that grow with the file, so a table of many thousand routes is
/// read (each node takes at least a byte of the file); the parser's other limits (aliases,
/// anchors, depth) are its defaults.
fn options(text: &str) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(text.len());
    budget.max_events = budget.max_events.max(text.len().saturating_mul(2));
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    // Where a value is skipped untyped, `.inf` and `.nan` are skipped like any other value
    // (rejecting them would refuse a file the typed read accepts, e.g. a path `.INF`).
    options.non_finite_float_policy = serde_saphyr::options::NonFiniteFloatPolicy::PassThrough;
    options
}

fn yaml_error(e: serde_saphyr::Error) -> String {
    e.to_string()
}

/// The second pass, over the top-level mapping: only `routes` is read, into the sink it holds.
struct RoutesPass<'a>(Routes<'a>);

impl<'de> DeserializeSeed<'de> for RoutesPass<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RoutesPass<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with routes and backends")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "routes" => {
                    map.next_value_seed(self.0.reborrow())?;
                }
                // Read as the first pass read them (typed, so a scalar means what it meant
                // there), one at a time, not kept.
                "backends" => {
                    map.next_value_seed(Each::<Backend>(PhantomData))?;
                }
                // The first pass refused any other key.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    /// A configuration written as a sequence (`[routes, backends]`), which the first pass,
    /// like any derived struct, accepts.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        seq.next_element_seed(self.0)?;
        seq.next_element_seed(Each::<Backend>(PhantomData))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// The routes: each compiled and written out as soon as it is parsed.
struct Routes<'a> {
    builder: &'a mut TableBuilder,
    json: &'a mut JsonDeflater,
    /// Set when a route cannot be compiled (parsing then stops).
    failed: &'a mut Option<CompileError>,
}

impl Routes<'_> {
    /// The same sink, borrowed for one `routes` value (a mapping may repeat the key).
    fn reborrow(&mut self) -> Routes<'_> {
        Routes {
            builder: &mut *self.builder,
            json: &mut *self.json,
            failed: &mut *self.failed,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Routes<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Routes<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of routes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut first = true;
        while let Some(route) = seq.next_element::<Route>()? {
            let written = if first { Ok(()) } else { self.json.raw(",") }
                .and_then(|()| self.json.value(&route))
                .and_then(|()| self.builder.add_route(route));
            first = false;
            if let Err(e) = written {
                let message = e.to_string();
                *self.failed = Some(e);
                return Err(de::Error::custom(message));
            }
        }
        Ok(())
    }
}
