//! A path pattern (`/api/jobs/{id}/log`) and the segments of a request's path, matched
//! segment by segment: a parameter is always a whole segment.

use std::ops::Range;

/// Most parameters in one pattern.
pub const MAX_PARAMS: usize = 3;

/// Most segments in a pattern; a longer path matches no endpoint.
const MAX_SEGMENTS: usize = 8;

/// A path pattern, split into its segments once.
pub struct Pattern {
    pub text: &'static str,
    segments: Vec<PatternSegment>,
}

#[derive(Debug, PartialEq)]
enum PatternSegment {
    Literal(&'static str),
    Param(&'static str),
}

/// The parameters of a matched path: each name with where its value is in the path;
/// unused places have an empty name.
pub type ParamSpans = [(&'static str, Range<usize>); MAX_PARAMS];

/// A path's segments (see `path_segments`), each with where it starts in the path, and
/// how many there are.
pub type Segments<'p> = ([(usize, &'p str); MAX_SEGMENTS], usize);

impl Pattern {
    /// # Panics
    /// On a pattern with a parameter inside a segment, or with too many parameters or
    /// segments: the endpoints are fixed, and the tests build them all.
    pub fn parse(text: &'static str) -> Pattern {
        let segments: Vec<PatternSegment> = text
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(|segment| match segment.strip_prefix('{') {
                Some(name) => PatternSegment::Param(
                    name.strip_suffix('}')
                        .filter(|name| !name.contains(['{', '}']))
                        .unwrap_or_else(|| panic!("a parameter is a whole segment: {text}")),
                ),
                None => {
                    assert!(
                        !segment.contains(['{', '}']),
                        "a parameter is a whole segment: {text}"
                    );
                    PatternSegment::Literal(segment)
                }
            })
            .collect();
        let params = segments
            .iter()
            .filter(|segment| matches!(segment, PatternSegment::Param(_)))
            .count();
        assert!(
            params <= MAX_PARAMS,
            "at most {MAX_PARAMS} parameters: {text}"
        );
        assert!(
            segments.len() <= MAX_SEGMENTS,
            "at most {MAX_SEGMENTS} segments: {text}"
        );
        Pattern { text, segments }
    }

    /// The parameters, when a path of these segments matches.
    pub fn matches(&self, (segments, count): &Segments) -> Option<ParamSpans> {
        if *count != self.segments.len() {
            return None;
        }
        let mut found = ParamSpans::default();
        let mut params = found.iter_mut();
        for (wanted, &(start, segment)) in self.segments.iter().zip(segments) {
            match *wanted {
                PatternSegment::Literal(literal) if literal == segment => {}
                PatternSegment::Param(name) => {
                    *params.next()? = (name, start..start + segment.len());
                }
                PatternSegment::Literal(_) => return None,
            }
        }
        Some(found)
    }
}

/// A path's segments, without the empty ones that repeated and trailing slashes make,
/// so that `/profiles//1/days/1/` is `/profiles/1/days/1` (the original API's paths end
/// in a slash); `None` for a path longer than any pattern, or for a request target that
/// is no path (`*`, or an authority alone, whose path is empty).
pub fn path_segments(path: &str) -> Option<Segments<'_>> {
    let mut segments: Segments = ([(0, ""); MAX_SEGMENTS], 0);
    let rest = path.strip_prefix('/')?;
    let mut start = 1;
    // Split as bytes: `str::split` looks for each `/` with a `memchr` call whose set-up
    // costs more than these short segments (half the routing's instructions).
    for segment in rest.as_bytes().split(|&byte| byte == b'/') {
        if !segment.is_empty() {
            // A `/` is ASCII, so every split falls on a character boundary.
            let text = rest.get(start - 1..start - 1 + segment.len())?;
            *segments.0.get_mut(segments.1)? = (start, text);
            segments.1 += 1;
        }
        start += segment.len() + 1;
    }
    Some(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params_of(
        pattern: &'static str,
        path: &'static str,
    ) -> Option<Vec<(&'static str, &'static str)>> {
        let segments = path_segments(path)?;
        let params = Pattern::parse(pattern).matches(&segments)?;
        Some(
            params
                .into_iter()
                .filter(|(name, _)| !name.is_empty())
                .map(|(name, span)| (name, &path[span]))
                .collect(),
        )
    }

    #[test]
    fn a_pattern_is_split_into_literals_and_parameters() {
        assert_eq!(
            Pattern::parse("/api/jobs/{id}/log").segments,
            [
                PatternSegment::Literal("api"),
                PatternSegment::Literal("jobs"),
                PatternSegment::Param("id"),
                PatternSegment::Literal("log"),
            ]
        );
        assert!(Pattern::parse("/").segments.is_empty());
    }

    #[test]
    fn parameters_take_whole_segments_and_literals_match_exactly() {
        assert_eq!(
            params_of(
                "/api/jobs/{id}/profiles/{p}/days/{d}",
                "/api/jobs/x/profiles/3/days/16"
            ),
            Some(vec![("id", "x"), ("p", "3"), ("d", "16")])
        );
        assert_eq!(params_of("/", "/"), Some(vec![]));
        assert_eq!(params_of("/api/jobs", "/api/jobs"), Some(vec![]));
        // One segment more or fewer, another literal, an empty parameter: no match.
        assert_eq!(params_of("/api/jobs/{id}", "/api/jobs/x/log"), None);
        assert_eq!(params_of("/api/jobs/{id}/log", "/api/jobs/x"), None);
        assert_eq!(params_of("/api/jobs/{id}/log", "/api/jobs/x/logs"), None);
        assert_eq!(params_of("/api/jobs/{id}", "/api/jobs/"), None);
        assert_eq!(params_of("/a/{p}/b/c/d/e/f/g", "/a/1/b/c/d/e/f/g/h"), None);
        assert_eq!(params_of("/api/jobs", "/api/job"), None);
        assert_eq!(params_of("/", "/api"), None);
        // Request targets that are no path.
        assert_eq!(params_of("/", ""), None);
        assert_eq!(params_of("/", "*"), None);
    }

    #[test]
    fn repeated_and_trailing_slashes_are_not_segments() {
        for path in [
            "/profiles/1/days/1/",
            "//profiles//1///days/1//",
            "/profiles/1/days/1///",
        ] {
            assert_eq!(
                params_of("/profiles/{p}/days/{d}", path),
                Some(vec![("p", "1"), ("d", "1")]),
                "{path}"
            );
        }
        for path in ["//", "///"] {
            assert_eq!(params_of("/", path), Some(vec![]), "{path}");
        }
        assert_eq!(params_of("/api/jobs", "//api/jobs/"), Some(vec![]));
        assert_eq!(
            params_of("/a/{p}/b", "//a/ünï✓//b/"),
            Some(vec![("p", "ünï✓")])
        );
    }

    #[test]
    #[should_panic(expected = "a parameter is a whole segment")]
    fn a_parameter_inside_a_segment_is_refused() {
        Pattern::parse("/assets/{name}.js");
    }

    #[test]
    #[should_panic(expected = "a parameter is a whole segment")]
    fn a_parameter_after_a_literal_in_one_segment_is_refused() {
        Pattern::parse("/assets/app.{ext}");
    }

    #[test]
    #[should_panic(expected = "a parameter is a whole segment")]
    fn two_parameters_in_one_segment_are_refused() {
        Pattern::parse("/assets/{name}{ext}");
    }
}
