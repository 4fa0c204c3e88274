//! One page of an `http` source, read within limits: the body up to a byte
//! cap (a larger `Content-Length` fails before reading), then the items
//! decoded one at a time against what is left of `max_rows`, so neither a
//! huge body nor a huge list is ever held whole.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The body of `response`, at most `cap` bytes. `shown` is the page's URL
/// without credentials, for the error.
pub(super) async fn read_body(
    mut response: reqwest::Response,
    cap: u64,
    shown: &str,
) -> anyhow::Result<Vec<u8>> {
    let too_big = || {
        anyhow::anyhow!(
            "GET {shown}: the page is larger than source.max_page_bytes ({cap} bytes); raise it if this is right"
        )
    };
    let declared = response.content_length();
    if let Some(length) = declared
        && length > cap
    {
        return Err(anyhow::anyhow!(
            "GET {shown}: the page is {length} bytes (Content-Length), more than source.max_page_bytes ({cap} bytes); raise it if this is right"
        ));
    }
    // Bounded by the check above; without a length, grow as it comes.
    let mut body = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    loop {
        let chunk = response.chunk().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out while reading the body"
            } else {
                "the body could not be read"
            };
            anyhow::anyhow!("GET {shown}: {what}")
        })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
}

/// Why a page could not be decoded.
#[derive(Debug)]
pub(super) enum PageError {
    NotJson(serde_json::Error),
    /// The items pointer does not lead to a list.
    NoList,
    /// The page has more items than the row budget allows.
    TooManyRows,
}

/// A decoded page: the document without its items (their place holds
/// `null`), and each item as `each` turned it.
pub(super) struct Page<T> {
    pub body: Value,
    pub items: Vec<T>,
}

/// Decodes `bytes`, handing each item of the list at `items` (a JSON
/// pointer, "" for the document itself) to `each` as soon as it is read.
/// More than `budget` items stop the decoding at the first one too many.
pub(super) fn decode<T>(
    bytes: &[u8],
    items: &str,
    budget: usize,
    each: impl FnMut(Value) -> T,
) -> Result<Page<T>, PageError> {
    let path = pointer_segments(items);
    let mut sink = Sink {
        budget,
        items: Vec::new(),
        each,
        found: false,
        stop: None,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walked = Walk {
        path: &path,
        sink: &mut sink,
    }
    .deserialize(&mut de)
    .and_then(|body| de.end().map(|()| body));
    let body = match walked {
        Ok(body) => body,
        Err(e) => return Err(sink.stop.take().unwrap_or(PageError::NotJson(e))),
    };
    if !sink.found {
        return Err(PageError::NoList);
    }
    Ok(Page {
        body,
        items: sink.items,
    })
}

/// `/a/b~1c` → `["a", "b/c"]` (RFC 6901 escapes).
fn pointer_segments(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

struct Sink<T, F> {
    budget: usize,
    items: Vec<T>,
    each: F,
    found: bool,
    stop: Option<PageError>,
}

/// Decodes one JSON value; on the way to the items (`path` left to walk)
/// it looks into objects and arrays, everywhere else it keeps the value.
struct Walk<'a, T, F> {
    path: &'a [String],
    sink: &'a mut Sink<T, F>,
}

impl<T, F> Walk<'_, T, F> {
    /// A scalar where the path goes on: the pointer does not resolve.
    /// A scalar at the end of the path: not a list.
    fn scalar<E: de::Error>(self, value: Value) -> Result<Value, E> {
        if self.path.is_empty() {
            self.sink.stop = Some(PageError::NoList);
            return Err(E::custom("the items are not a list"));
        }
        Ok(value)
    }
}

impl<'de, T, F: FnMut(Value) -> T> DeserializeSeed<'de> for Walk<'_, T, F> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T, F: FnMut(Value) -> T> Visitor<'de> for Walk<'_, T, F> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.scalar(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.scalar(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.scalar(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.scalar(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.scalar(Value::String(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.scalar(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let sink = self.sink;
        let Some((next, rest)) = self.path.split_first() else {
            // The items: one at a time, counted as they come. A second
            // list at the same place (a repeated key) replaces the first,
            // as a JSON pointer would see it.
            sink.found = true;
            sink.items.clear();
            while let Some(item) = seq.next_element::<Value>()? {
                if sink.items.len() >= sink.budget {
                    sink.stop = Some(PageError::TooManyRows);
                    return Err(de::Error::custom("more rows than source.max_rows"));
                }
                let row = (sink.each)(item);
                sink.items.push(row);
            }
            return Ok(Value::Null);
        };
        let mut list = Vec::new();
        loop {
            let element = if *next == list.len().to_string() {
                seq.next_element_seed(Walk {
                    path: rest,
                    sink: &mut *sink,
                })?
            } else {
                seq.next_element::<Value>()?
            };
            match element {
                Some(value) => list.push(value),
                None => return Ok(Value::Array(list)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let sink = self.sink;
        let Some((next, rest)) = self.path.split_first() else {
            sink.stop = Some(PageError::NoList);
            return Err(de::Error::custom("the items are not a list"));
        };
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == *next {
                map.next_value_seed(Walk {
                    path: rest,
                    sink: &mut *sink,
                })?
            } else {
                map.next_value::<Value>()?
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(bytes: &str, items: &str, budget: usize) -> Result<(Value, Vec<i64>), PageError> {
        decode(bytes.as_bytes(), items, budget, |item| {
            item["id"].as_i64().unwrap_or(-1)
        })
        .map(|page| (page.body, page.items))
    }

    #[test]
    fn items_are_taken_out_and_the_rest_of_the_page_is_kept() {
        let page = r#"{"meta": {"next": "/p2"}, "data": {"tickets": [{"id": 1}, {"id": 2}]}, "users": [{"id": 9}]}"#;
        let Ok((body, items)) = ids(page, "/data/tickets", 10) else {
            panic!("the page decodes");
        };
        assert_eq!(items, vec![1, 2]);
        assert_eq!(body.pointer("/meta/next"), Some(&Value::from("/p2")));
        assert_eq!(body.pointer("/users/0/id"), Some(&Value::from(9)));
        assert_eq!(body.pointer("/data/tickets"), Some(&Value::Null));
    }

    #[test]
    fn the_page_itself_may_be_the_list_and_pointers_may_index_arrays() {
        assert!(matches!(ids(r#"[{"id": 3}]"#, "", 10), Ok((_, v)) if v == vec![3]));
        let nested = r#"{"pages": [{"x": 1}, {"a/b": [{"id": 4}]}]}"#;
        assert!(matches!(ids(nested, "/pages/1/a~1b", 10), Ok((_, v)) if v == vec![4]));
    }

    #[test]
    fn decoding_stops_at_the_first_row_over_the_budget() {
        // Anything after the row too many is never looked at.
        let page = r#"{"tickets": [{"id": 1}, {"id": 2}, {"id": 3}, this is not JSON"#;
        assert!(matches!(
            ids(page, "/tickets", 2),
            Err(PageError::TooManyRows)
        ));
        assert!(matches!(
            ids(page, "/tickets", 5),
            Err(PageError::NotJson(_))
        ));
    }

    #[test]
    fn a_pointer_that_does_not_lead_to_a_list_is_named_as_such() {
        for (page, pointer) in [
            (r#"{"tickets": {"id": 1}}"#, "/tickets"),
            (r#"{"tickets": 7}"#, "/tickets"),
            (r#"{"other": []}"#, "/tickets"),
            (r#"{"tickets": "x"}"#, "/tickets/0"),
            (r#"{"id": 1}"#, ""),
        ] {
            assert!(
                matches!(ids(page, pointer, 10), Err(PageError::NoList)),
                "{page} at {pointer}"
            );
        }
        assert!(matches!(
            ids(r#"{"tickets": []} trailing"#, "/tickets", 10),
            Err(PageError::NotJson(_))
        ));
    }
}
