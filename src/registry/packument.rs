//! The slim packument: only what check and stage read (`dist-tags.latest`, the version keys
//! with each version's `dist`, `bin` and `deprecated`, and the publish times), read straight
//! from the response bytes. Everything else a registry sends (readmes, every manifest's
//! dependencies, maintainers) is skipped unparsed, so a 3 MB packument costs a few kilobytes.
//! Fields of an unexpected type are dropped rather than failing the whole document: real
//! packuments hold oddities such as `time.unpublished` objects.

use std::collections::BTreeMap;

use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize};

/// Which form of the packument a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Everything, including `time` (the publish time of each version).
    Full,
    /// npm's abbreviated install form (`application/vnd.npm.install-v1+json`): much smaller,
    /// but without publish times, so only for a policy with no cooldown.
    Abbreviated,
}

impl Form {
    /// The `Accept` header for this form; a registry without the abbreviated form answers
    /// with the full one.
    pub fn accept(self) -> &'static str {
        match self {
            Form::Full => "application/json",
            Form::Abbreviated => "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8",
        }
    }
}

/// The parts of a packument that check and stage use. Serialized, it is the cache's form of
/// the packument, and it deserializes from itself as from a registry's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Packument {
    #[serde(rename = "dist-tags", default, skip_serializing_if = "Option::is_none")]
    pub dist_tags: Option<DistTags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<BTreeMap<String, Manifest>>,
    /// Publish time (RFC 3339) by version, plus the registry's `created` and `modified`.
    #[serde(default, deserialize_with = "string_map", skip_serializing_if = "BTreeMap::is_empty")]
    pub time: BTreeMap<String, String>,
    /// True when this came from an abbreviated answer, which has no publish times.
    #[serde(rename = "tend-abbreviated", default, skip_serializing_if = "std::ops::Not::not")]
    pub abbreviated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DistTags {
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
}

/// One version's manifest, as far as staging needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default, deserialize_with = "lenient_default")]
    pub dist: Dist,
    /// A path (the bin named after the package) or a map of bin names to paths.
    #[serde(default, deserialize_with = "lenient_default", skip_serializing_if = "Bin::is_none")]
    pub bin: Bin,
    /// The deprecation message, when the version is deprecated.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dist {
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub tarball: Option<String>,
    /// Subresource integrity: `sha512-<base64>`, possibly several hashes separated by spaces.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
    /// The legacy SHA-1 of the tarball, in hex.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub shasum: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bin {
    #[default]
    None,
    One(String),
    Many(BTreeMap<String, String>),
}

impl Bin {
    fn is_none(&self) -> bool {
        *self == Bin::None
    }

    /// The paths of the declared bins.
    pub fn paths(&self) -> Vec<String> {
        match self {
            Bin::None => Vec::new(),
            Bin::One(path) => vec![path.clone()],
            Bin::Many(map) => map.values().cloned().collect(),
        }
    }
}

impl Packument {
    /// Reads a registry's answer (or the cache's copy); the error says whether the bytes were
    /// not JSON at all or JSON of the wrong shape.
    pub fn from_slice(bytes: &[u8]) -> Result<Packument, String> {
        serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => format!("the packument is malformed: {e}"),
            _ => format!("the registry sent invalid JSON: {e}"),
        })
    }

    pub fn latest(&self) -> Option<&str> {
        self.dist_tags.as_ref()?.latest.as_deref()
    }

    pub fn version(&self, version: &str) -> Option<&Manifest> {
        self.versions.as_ref()?.get(version)
    }
}

/// A value of type `T`, or `None` when the document holds something else there.
#[derive(Deserialize)]
#[serde(untagged)]
enum Either<T> {
    Wanted(T),
    Other(IgnoredAny),
}

fn lenient<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(match Either::<T>::deserialize(d)? {
        Either::Wanted(value) => Some(value),
        Either::Other(_) => None,
    })
}

fn lenient_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    lenient(d).map(Option::unwrap_or_default)
}

/// A map of strings whose non-string values (and a map that is not one) are dropped.
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map: Option<BTreeMap<String, Either<String>>> = lenient(d)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match v {
            Either::Wanted(s) => Some((k, s)),
            Either::Other(_) => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_check_and_stage_read_and_drops_the_rest() {
        let text = r#"{
            "_id": "x", "readme": "long text", "maintainers": [{"name": "a"}],
            "dist-tags": {"latest": "1.1.0", "next": "2.0.0-rc.1"},
            "versions": {
                "1.0.0": {"name": "x", "dependencies": {"y": "^1"}, "bin": "cli.js",
                          "dist": {"tarball": "http://r/x-1.0.0.tgz", "shasum": "ab", "integrity": "sha512-AA=="}},
                "1.1.0": {"bin": {"x": "a.js", "y": "b.js"}, "deprecated": "use 2",
                          "dist": {"tarball": "http://r/x-1.1.0.tgz", "unpackedSize": 5}},
                "1.2.0": {"bin": 7, "deprecated": false, "dist": "odd"}
            },
            "time": {"created": "2020-01-01T00:00:00Z", "1.0.0": "2020-01-01T00:00:00Z",
                     "unpublished": {"time": "2021-01-01T00:00:00Z", "versions": ["0.1.0"]}}
        }"#;
        let p = Packument::from_slice(text.as_bytes()).unwrap();
        assert_eq!(p.latest(), Some("1.1.0"));
        let v = p.version("1.0.0").unwrap();
        assert_eq!((v.bin.paths(), v.dist.shasum.as_deref()), (vec!["cli.js".to_owned()], Some("ab")));
        let v = p.version("1.1.0").unwrap();
        assert_eq!(
            (v.bin.paths().len(), v.deprecated.as_deref(), v.dist.integrity.as_deref()),
            (2, Some("use 2"), None)
        );
        assert_eq!(p.version("1.2.0").unwrap(), &Manifest::default());
        assert_eq!(p.time.keys().collect::<Vec<_>>(), ["1.0.0", "created"]);
        // The cache's copy reads back as the same packument.
        let cached = serde_json::to_vec(&p).unwrap();
        assert_eq!(Packument::from_slice(&cached).unwrap(), p);
        assert!(cached.len() < text.len() / 2);
    }

    #[test]
    fn says_whether_the_bytes_are_not_json_or_the_wrong_json() {
        let garbage = Packument::from_slice(b"<html>oops</html>").unwrap_err();
        assert_eq!(garbage, "the registry sent invalid JSON: expected value at line 1 column 1");
        let wrong = Packument::from_slice(br#"{"versions": "many"}"#).unwrap_err();
        assert!(wrong.starts_with("the packument is malformed: invalid type: string \"many\""), "{wrong}");
        assert_eq!(Packument::from_slice(b"{}").unwrap(), Packument::default());
    }
}
