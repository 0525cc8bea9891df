//! How primitive results reach a playbook. A result's top-level map is a Rhai map; objects
//! nested in it are read-only `Record`s. Rhai counts every nested map entry and string byte
//! of a value against the sandbox limits, which a large host-made answer (a prune plan of
//! thousands of items) would exceed; a record is opaque to those counts, while the playbook
//! still reads it like a map: `item.path`, `item["path"]`, `"path" in item`, `item.keys()`.

use std::rc::Rc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position};
use serde_json::Value;

/// A read-only JSON object inside a primitive's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Record(Rc<serde_json::Map<String, Value>>);

/// JSON to Rhai: the top-level object becomes a map, nested objects records.
pub fn to_dynamic(value: Value) -> Dynamic {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                out.insert(key.into(), nested(value));
            }
            out.into()
        }
        other => nested(other),
    }
}

fn nested(value: Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => b.into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.into(),
        Value::Array(items) => items.into_iter().map(nested).collect::<Array>().into(),
        Value::Object(map) => Dynamic::from(Record(Rc::new(map))),
    }
}

/// Rhai to JSON, for primitive arguments and run reports; records pass through as they came.
pub fn to_json(value: &Dynamic) -> Value {
    if value.is_unit() {
        Value::Null
    } else if let Some(b) = value.clone().try_cast::<bool>() {
        Value::Bool(b)
    } else if let Some(i) = value.clone().try_cast::<rhai::INT>() {
        Value::from(i)
    } else if let Some(f) = value.clone().try_cast::<rhai::FLOAT>() {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    } else if let Some(s) = value.clone().try_cast::<ImmutableString>() {
        Value::String(s.to_string())
    } else if let Some(c) = value.clone().try_cast::<char>() {
        Value::String(c.to_string())
    } else if let Some(record) = value.clone().try_cast::<Record>() {
        Value::Object((*record.0).clone())
    } else if value.is_array() {
        Value::Array(value.clone().cast::<Array>().iter().map(to_json).collect())
    } else if value.is_map() {
        Value::Object(value.clone().cast::<Map>().iter().map(|(k, v)| (k.to_string(), to_json(v))).collect())
    } else {
        Value::String(value.to_string())
    }
}

fn field(record: &mut Record, key: ImmutableString) -> Result<Dynamic, Box<EvalAltResult>> {
    match record.0.get(key.as_str()) {
        Some(value) => Ok(nested(value.clone())),
        None => Err(Box::new(EvalAltResult::ErrorPropertyNotFound(key.to_string(), Position::NONE))),
    }
}

/// Registers the record type: field access, `in`, `keys`, `len`, `to_map` and printing.
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Record>("Record")
        .register_indexer_get(field)
        .register_fn("contains", |r: &mut Record, key: ImmutableString| r.0.contains_key(key.as_str()))
        .register_fn("keys", |r: &mut Record| r.0.keys().map(|k| Dynamic::from(k.clone())).collect::<Array>())
        .register_fn("len", |r: &mut Record| r.0.len() as rhai::INT)
        .register_fn("to_map", |r: &mut Record| to_dynamic(Value::Object((*r.0).clone())))
        .register_fn("to_string", |r: &mut Record| Value::Object((*r.0).clone()).to_string())
        .register_fn("to_debug", |r: &mut Record| Value::Object((*r.0).clone()).to_string())
        .register_fn("==", |a: Record, b: Record| a == b)
        .register_fn("!=", |a: Record, b: Record| a != b);
}
