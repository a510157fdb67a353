//! The selectors' behaviour as the API server shows it: parsing, matching, errors and printing.

use serde_json::{Map, Value, json};

use super::parser::BINARY_OPERATORS;
use super::*;

fn labels(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(map) => map,
        _ => panic!("test labels must be an object"),
    }
}

fn sel(s: &str) -> LabelSelector {
    LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn matches(selector: &str, l: Value) -> bool {
    sel(selector).matches(&labels(l))
}

fn parse_err(s: &str) -> SelectorError {
    match LabelSelector::parse(s) {
        Ok(parsed) => panic!("{s:?} should not parse, got {parsed:?}"),
        Err(e) => e,
    }
}

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
];

// ---- label selector string: operators ----

#[test]
fn empty_and_blank_selectors_select_everything() {
    for s in ["", " ", "\t\r\n "] {
        let selector = sel(s);
        assert!(selector.is_everything(), "{s:?}");
        assert!(selector.matches(&Map::new()));
        assert!(selector.matches(&labels(json!({"a": "b"}))));
    }
}

#[test]
fn equals_and_double_equals() {
    assert!(matches("app=web", json!({"app": "web"})));
    assert!(!matches("app=web", json!({"app": "db"})));
    assert!(!matches("app=web", json!({})));
    assert!(matches("app==web", json!({"app": "web", "x": "y"})));
    assert!(!matches("app==web", json!({"app": "webx"})));
}

#[test]
fn not_equals_matches_absent_key() {
    assert!(matches("app!=web", json!({})));
    assert!(matches("app!=web", json!({"app": "db"})));
    assert!(!matches("app!=web", json!({"app": "web"})));
}

#[test]
fn in_with_multiple_values() {
    let s = "env in (prod, staging,dev)";
    assert!(matches(s, json!({"env": "prod"})));
    assert!(matches(s, json!({"env": "staging"})));
    assert!(matches(s, json!({"env": "dev"})));
    assert!(!matches(s, json!({"env": "qa"})));
    assert!(!matches(s, json!({})));
    assert_eq!(
        sel(s).requirements()[0].values(),
        ["dev", "prod", "staging"]
    );
}

#[test]
fn notin_matches_absent_key() {
    let s = "env notin (prod,staging)";
    assert!(matches(s, json!({})));
    assert!(matches(s, json!({"env": "dev"})));
    assert!(!matches(s, json!({"env": "prod"})));
    assert!(!matches(s, json!({"env": "staging"})));
}

#[test]
fn exists_and_does_not_exist() {
    assert!(matches("canary", json!({"canary": ""})));
    assert!(matches("canary", json!({"canary": "true"})));
    assert!(!matches("canary", json!({})));
    assert!(matches("!canary", json!({})));
    assert!(!matches("!canary", json!({"canary": ""})));
    assert!(matches("! canary", json!({"other": "x"})));
    assert_eq!(
        sel("!canary").requirements()[0].operator(),
        LabelOperator::DoesNotExist
    );
    assert_eq!(
        sel("canary").requirements()[0].operator(),
        LabelOperator::Exists
    );
}

#[test]
fn greater_and_less_than() {
    assert!(matches("replicas>2", json!({"replicas": "3"})));
    assert!(!matches("replicas>2", json!({"replicas": "2"})));
    assert!(!matches("replicas>2", json!({"replicas": "many"})));
    assert!(!matches("replicas>2", json!({})));
    assert!(matches("replicas<2", json!({"replicas": "1"})));
    assert!(!matches("replicas<2", json!({"replicas": "2"})));
    assert!(matches!(
        parse_err("replicas>two"),
        SelectorError::InvalidRequirementValues { .. }
    ));
}

#[test]
fn combination_of_requirements() {
    let s = "app=web,tier notin (db),!canary";
    assert!(matches(s, json!({"app": "web"})));
    assert!(matches(s, json!({"app": "web", "tier": "frontend"})));
    assert!(!matches(s, json!({"app": "web", "tier": "db"})));
    assert!(!matches(s, json!({"app": "web", "canary": "true"})));
    assert!(!matches(s, json!({"app": "api"})));
    assert_eq!(sel(s).requirements().len(), 3);
}

#[test]
fn everything_combined() {
    let s = "a=1,b==2,c!=3,d in (4,5),e notin (6),f,!g,h>7,i<8";
    let l = json!({"a": "1", "b": "2", "c": "0", "d": "5", "e": "0", "f": "", "h": "9", "i": "0"});
    assert!(matches(s, l.clone()));
    let mut l = labels(l);
    l.insert("g".into(), json!("x"));
    assert!(!sel(s).matches(&l));
}

#[test]
fn whitespace_around_tokens_is_tolerated() {
    let s = "  app  =  web ,\ttier in ( a , b ) ,\n! canary , env notin(x)  ";
    let selector = sel(s);
    assert_eq!(selector.requirements().len(), 4);
    assert!(selector.matches(&labels(json!({"app": "web", "tier": "b"}))));
    assert!(!selector.matches(&labels(json!({"app": "web", "tier": "c"}))));
    assert!(matches("a in(b)", json!({"a": "b"})));
    assert!(matches("a!=b", json!({"a": "c"})));
    assert!(matches("a != b", json!({"a": "c"})));
}

#[test]
fn empty_values() {
    assert!(matches("a=", json!({"a": ""})));
    assert!(!matches("a=", json!({"a": "x"})));
    assert!(!matches("a=", json!({})));
    assert!(matches("a==,b", json!({"a": "", "b": "x"})));
    assert!(matches("a!=", json!({"a": "x"})));
    assert!(matches("a in ()", json!({"a": ""})));
    assert_eq!(sel("a in ()").requirements()[0].values(), [""]);
    assert_eq!(sel("a in (,b)").requirements()[0].values(), ["", "b"]);
    assert_eq!(sel("a in (b,)").requirements()[0].values(), ["", "b"]);
    assert_eq!(
        sel("a in (b,,c)").requirements()[0].values(),
        ["", "b", "c"]
    );
    assert_eq!(sel("a in (b,b)").requirements()[0].values(), ["b"]);
}

#[test]
fn keywords_as_keys_and_values() {
    assert!(matches("in in (in, notin)", json!({"in": "notin"})));
    assert!(matches("notin=in", json!({"notin": "in"})));
    assert!(matches("!in", json!({})));
    assert!(matches("in", json!({"in": "x"})));
    assert!(matches("inx in (y)", json!({"inx": "y"})));
}

#[test]
fn prefixed_keys() {
    let s = "app.kubernetes.io/name=web,example.com/tier in (a)";
    assert!(matches(
        s,
        json!({"app.kubernetes.io/name": "web", "example.com/tier": "a"})
    ));
    let long_prefix = format!("{}.com/a", "x".repeat(249));
    assert_eq!(long_prefix.len() - 2, 253);
    assert!(LabelSelector::parse(&long_prefix).is_ok());
}

#[test]
fn requirements_are_sorted_and_displayed_like_kubernetes() {
    let selector = sel("z=1, a in (c,b), !m, k, x!=y, n notin (q), g==h");
    assert_eq!(
        selector.to_string(),
        "a in (b,c),g==h,k,!m,n notin (q),x!=y,z=1"
    );
    assert_eq!(sel(&selector.to_string()), selector);
}

// ---- label selector string: errors ----

#[test]
fn syntax_errors_name_the_offending_token() {
    let cases = [
        ("a b", "b", BINARY_OPERATORS),
        ("a=b c", "c", "',' or 'end of string'"),
        ("a=b,", "", "identifier after ','"),
        ("a=b,,c", ",", "identifier after ','"),
        (",a", ",", "!, identifier, or 'end of string'"),
        ("=a", "=", "!, identifier, or 'end of string'"),
        ("!=a", "!=", "!, identifier, or 'end of string'"),
        ("a in b", "b", "'('"),
        ("a in (b", "", "',' or ')'"),
        ("a in (b c)", "c", "',' or ')'"),
        ("a in (=)", "=", "',', ')' or identifier"),
        ("a notin", "", "'('"),
        ("!", "", "identifier"),
        ("!!a", "!", "identifier"),
        ("!a=b", "=", "',' or 'end of string'"),
        ("a=b=c", "=", "',' or 'end of string'"),
        ("a===b", "=", "identifier"),
        ("a=(b)", "(", "identifier"),
        ("a!b", "!", BINARY_OPERATORS),
        ("a<=1", "=", "identifier"),
        ("a in (b,=)", "=", "',', or identifier"),
    ];
    for (input, found, expected) in cases {
        assert_eq!(
            parse_err(input),
            SelectorError::LabelSyntax {
                selector: input.to_owned(),
                found: found.to_owned(),
                expected: expected.to_owned(),
            },
            "{input:?}"
        );
    }
    let message = parse_err("a b").to_string();
    assert!(
        message.contains("\"a b\"") && message.contains("'b'"),
        "{message}"
    );
}

#[test]
fn invalid_keys_are_rejected() {
    let long_name = "a".repeat(64);
    let long_prefix = format!("{}/a", "a".repeat(254));
    let bad = [
        "-a",
        "a-",
        "_a",
        "a.",
        "a$b",
        "/a",
        "a/",
        "a/b/c",
        "Example.com/a",
        "ex_ample.com/a",
        "a..b/c",
        "-a.com/b",
        "é",
        long_name.as_str(),
        long_prefix.as_str(),
    ];
    for key in bad {
        for selector in [
            key.to_owned(),
            format!("!{key}"),
            format!("{key}=v"),
            format!("{key} in (v)"),
        ] {
            match parse_err(&selector) {
                SelectorError::InvalidLabelKey { key: k, reason } => {
                    assert_eq!(k, key);
                    assert!(!reason.is_empty());
                }
                other => panic!("{selector:?}: unexpected {other:?}"),
            }
        }
    }
    let ok_name = "a".repeat(63);
    for key in [
        ok_name.as_str(),
        "A",
        "a.b_c-D",
        "1",
        "k8s.io/x",
        "a-b.c1/Z_z",
    ] {
        assert!(LabelSelector::parse(key).is_ok(), "{key:?}");
    }
    let message = parse_err("a/b/c").to_string();
    assert!(message.contains("\"a/b/c\""), "{message}");
}

#[test]
fn invalid_values_are_rejected() {
    let long_value = "v".repeat(64);
    for value in ["-v", "v-", ".v", "v$", "v/w", "é", long_value.as_str()] {
        for selector in [
            format!("k={value}"),
            format!("k!={value}"),
            format!("k in (ok,{value})"),
            format!("k notin ({value})"),
        ] {
            match parse_err(&selector) {
                SelectorError::InvalidLabelValue { key, value: v, .. } => {
                    assert_eq!(key, "k");
                    assert_eq!(v, value);
                }
                other => panic!("{selector:?}: unexpected {other:?}"),
            }
        }
    }
    let ok_value = "v".repeat(63);
    assert!(LabelSelector::parse(&format!("k={ok_value}")).is_ok());
    assert!(LabelSelector::parse("k=A.b_c-1").is_ok());
}

#[test]
fn non_string_label_values_never_match_a_value() {
    let l = labels(json!({"a": 1}));
    assert!(!sel("a=1").matches(&l));
    assert!(sel("a!=1").matches(&l));
    assert!(sel("a").matches(&l));
}

#[test]
fn matches_object_reads_metadata_labels() {
    let selector = sel("app=web");
    assert!(selector.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
    assert!(!selector.matches_object(&json!({"metadata": {"name": "x"}})));
    assert!(sel("app!=web").matches_object(&json!({"metadata": {}})));
    assert!(sel("!app").matches_object(&json!({})));
}

// ---- LabelSelector objects ----

fn from_object(v: Value) -> Result<LabelSelector, SelectorError> {
    LabelSelector::from_label_selector_object(&v)
}

#[test]
fn empty_object_selects_everything_and_null_nothing() {
    let everything = from_object(json!({})).unwrap();
    assert!(everything.is_everything());
    assert!(everything.matches(&Map::new()));
    let everything = from_object(json!({"matchLabels": {}, "matchExpressions": []})).unwrap();
    assert!(everything.matches(&labels(json!({"a": "b"}))));
    let everything = from_object(json!({"matchLabels": null})).unwrap();
    assert!(everything.is_everything());

    let nothing = from_object(Value::Null).unwrap();
    assert!(nothing.is_nothing());
    assert!(!nothing.is_everything());
    assert!(!nothing.matches(&Map::new()));
    assert!(!nothing.matches(&labels(json!({"a": "b"}))));
}

#[test]
fn match_labels_and_expressions() {
    let selector = from_object(json!({
        "matchLabels": {"app": "web", "tier": "frontend"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "zone", "operator": "NotIn", "values": ["us-east-1a"]},
            {"key": "team", "operator": "Exists"},
            {"key": "canary", "operator": "DoesNotExist", "values": []},
        ]
    }))
    .unwrap();
    assert_eq!(selector.requirements().len(), 6);
    let good = json!({"app": "web", "tier": "frontend", "env": "prod", "team": "a"});
    assert!(selector.matches(&labels(good.clone())));
    let mut l = labels(good.clone());
    l.insert("zone".into(), json!("us-east-1b"));
    assert!(selector.matches(&l));
    l.insert("zone".into(), json!("us-east-1a"));
    assert!(!selector.matches(&l));
    let mut l = labels(good.clone());
    l.insert("canary".into(), json!("1"));
    assert!(!selector.matches(&l));
    let mut l = labels(good.clone());
    l.remove("team");
    assert!(!selector.matches(&l));
    let mut l = labels(good);
    l.insert("env".into(), json!("dev"));
    assert!(!selector.matches(&l));
    assert_eq!(
        selector.to_string(),
        "app=web,!canary,env in (prod,staging),team,tier=frontend,zone notin (us-east-1a)"
    );
}

#[test]
fn object_form_equals_string_form() {
    let from_obj = from_object(json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
    }))
    .unwrap();
    assert_eq!(from_obj, sel("tier notin (db), app=web"));
}

#[test]
fn object_form_validation() {
    let in_without_values = from_object(json!({
        "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
    }));
    assert!(matches!(
        in_without_values,
        Err(SelectorError::InvalidRequirementValues { ref key, .. }) if key == "a"
    ));
    let notin_missing_values = from_object(json!({
        "matchExpressions": [{"key": "a", "operator": "NotIn"}]
    }));
    assert!(matches!(
        notin_missing_values,
        Err(SelectorError::InvalidRequirementValues { .. })
    ));
    for op in ["Exists", "DoesNotExist"] {
        let with_values = from_object(json!({
            "matchExpressions": [{"key": "a", "operator": op, "values": ["x"]}]
        }));
        assert!(
            matches!(
                with_values,
                Err(SelectorError::InvalidRequirementValues { ref values, .. }) if values == &["x"]
            ),
            "{op}: {with_values:?}"
        );
    }
    for op in ["in", "Gt", "Lt", "", "Equals"] {
        let bad_op = from_object(json!({
            "matchExpressions": [{"key": "a", "operator": op, "values": ["1"]}]
        }));
        assert_eq!(
            bad_op,
            Err(SelectorError::InvalidSelectorOperator {
                key: "a".into(),
                operator: op.into()
            })
        );
    }
    assert!(matches!(
        from_object(json!({"matchLabels": {"-a": "b"}})),
        Err(SelectorError::InvalidLabelKey { .. })
    ));
    assert!(matches!(
        from_object(json!({"matchLabels": {"a": "b c"}})),
        Err(SelectorError::InvalidLabelValue { .. })
    ));
    assert!(matches!(
        from_object(json!({"matchExpressions": [{"key": "a/b/c", "operator": "Exists"}]})),
        Err(SelectorError::InvalidLabelKey { .. })
    ));
    assert!(matches!(
        from_object(json!({"matchExpressions": [{"operator": "Exists"}]})),
        Err(SelectorError::InvalidLabelKey { ref key, .. }) if key.is_empty()
    ));
    assert!(matches!(
        from_object(json!({
            "matchExpressions": [{"key": "a", "operator": "In", "values": ["ok", "-bad"]}]
        })),
        Err(SelectorError::InvalidLabelValue { ref value, .. }) if value == "-bad"
    ));
}

#[test]
fn object_form_type_errors_name_the_path() {
    let cases = [
        (json!("app=web"), "labelSelector"),
        (json!({"matchLabels": []}), "matchLabels"),
        (json!({"matchLabels": {"a": 1}}), "matchLabels[\"a\"]"),
        (json!({"matchExpressions": {}}), "matchExpressions"),
        (json!({"matchExpressions": ["a"]}), "matchExpressions[0]"),
        (
            json!({"matchExpressions": [{"key": 1, "operator": "Exists"}]}),
            "matchExpressions[0].key",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": true}]}),
            "matchExpressions[0].operator",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}),
            "matchExpressions[0].values",
        ),
        (
            json!({"matchExpressions": [
                {"key": "a", "operator": "Exists"},
                {"key": "a", "operator": "In", "values": ["x", 2]}
            ]}),
            "matchExpressions[1].values[1]",
        ),
    ];
    for (input, expected_path) in cases {
        match from_object(input.clone()) {
            Err(SelectorError::MalformedSelectorObject { path, .. }) => {
                assert_eq!(path, expected_path, "{input}");
            }
            other => panic!("{input}: unexpected {other:?}"),
        }
    }
}

#[test]
fn requirement_new_validates_like_kubernetes() {
    assert!(LabelRequirement::new("a", LabelOperator::Equals, vec![]).is_err());
    assert!(
        LabelRequirement::new("a", LabelOperator::Equals, vec!["x".into(), "y".into()]).is_err()
    );
    assert!(LabelRequirement::new("a", LabelOperator::In, vec![]).is_err());
    assert!(LabelRequirement::new("a", LabelOperator::Exists, vec!["x".into()]).is_err());
    assert!(LabelRequirement::new("a", LabelOperator::GreaterThan, vec!["1".into()]).is_ok());
    assert!(
        LabelRequirement::new("a", LabelOperator::LessThan, vec!["1".into(), "2".into()]).is_err()
    );
    let r = LabelRequirement::new("a", LabelOperator::NotIn, vec!["y".into(), "x".into()]).unwrap();
    assert_eq!(r.key(), "a");
    assert_eq!(r.values(), ["x", "y"]);
    assert_eq!(r.to_string(), "a notin (x,y)");
}

// ---- field selectors ----

fn field_sel(s: &str) -> FieldSelector {
    FieldSelector::parse(s, POD_FIELDS).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn pod() -> Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"nodeName": "node-a", "hostNetwork": true},
        "status": {"phase": "Running"}
    })
}

#[test]
fn field_selector_operators() {
    let p = pod();
    assert!(field_sel("metadata.name=web-1").matches(&p));
    assert!(field_sel("metadata.name==web-1").matches(&p));
    assert!(!field_sel("metadata.name=web-2").matches(&p));
    assert!(field_sel("metadata.name!=web-2").matches(&p));
    assert!(!field_sel("metadata.name!=web-1").matches(&p));
    assert!(field_sel("status.phase=Running,spec.nodeName=node-a").matches(&p));
    assert!(!field_sel("status.phase=Running,spec.nodeName!=node-a").matches(&p));
    assert!(field_sel("metadata.namespace=default").matches(&p));
}

#[test]
fn empty_field_selector_selects_everything() {
    for s in ["", ",", ",,"] {
        let selector = field_sel(s);
        assert!(selector.is_everything(), "{s:?}");
        assert!(selector.matches(&json!({})));
    }
    assert_eq!(field_sel("status.phase=Running,").requirements().len(), 1);
}

#[test]
fn absent_field_is_empty_string() {
    let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
    assert!(field_sel("spec.nodeName=").matches(&unscheduled));
    assert!(field_sel("spec.nodeName==").matches(&unscheduled));
    assert!(!field_sel("spec.nodeName!=").matches(&unscheduled));
    assert!(field_sel("spec.nodeName!=node-a").matches(&unscheduled));
    assert!(!field_sel("spec.nodeName=node-a").matches(&unscheduled));
    assert!(field_sel("status.phase=").matches(&json!({"status": null})));
    assert!(field_sel("status.phase=").matches(&json!("not an object")));
}

#[test]
fn non_string_fields_use_json_spelling() {
    let selector = FieldSelector::parse("spec.hostNetwork=true", &["spec.hostNetwork"]).unwrap();
    assert!(selector.matches(&pod()));
    let selector = FieldSelector::parse("spec.replicas=3", &["spec.replicas"]).unwrap();
    assert!(selector.matches(&json!({"spec": {"replicas": 3}})));
}

#[test]
fn field_selector_escapes() {
    let selector = field_sel(r"metadata.name=a\,b\=c\\d");
    assert_eq!(selector.requirements()[0].value(), r"a,b=c\d");
    assert!(selector.matches(&json!({"metadata": {"name": "a,b=c\\d"}})));
    assert_eq!(selector.to_string(), r"metadata.name=a\,b\=c\\d");

    // An escaped comma does not split terms; an escaped backslash before a
    // comma does.
    let selector = field_sel(r"metadata.name=x\\,status.phase=Running");
    assert_eq!(selector.requirements().len(), 2);
    assert_eq!(selector.exact_match("metadata.name"), Some("x\\"));

    assert_eq!(
        FieldSelector::parse(r"metadata.name=a\b", POD_FIELDS),
        Err(SelectorError::InvalidEscape {
            value: r"a\b".into(),
            sequence: r"\b".into()
        })
    );
    assert_eq!(
        FieldSelector::parse(r"metadata.name=a\", POD_FIELDS),
        Err(SelectorError::InvalidEscape {
            value: r"a\".into(),
            sequence: r"\".into()
        })
    );
    assert_eq!(
        FieldSelector::parse("metadata.name=a=b", POD_FIELDS),
        Err(SelectorError::UnescapedCharacter {
            value: "a=b".into(),
            character: '='
        })
    );
    // `===` splits at `==`, leaving a bare `=` in the value.
    assert!(matches!(
        FieldSelector::parse("metadata.name===a", POD_FIELDS),
        Err(SelectorError::UnescapedCharacter { character: '=', .. })
    ));
}

#[test]
fn field_selector_syntax_errors() {
    for s in ["metadata.name", "status.phase=Running,bogus", "a<b"] {
        match FieldSelector::parse(s, POD_FIELDS) {
            Err(SelectorError::FieldSyntax { selector, term }) => {
                assert_eq!(selector, s);
                assert!(s.contains(&term));
            }
            other => panic!("{s:?}: unexpected {other:?}"),
        }
    }
    let message = FieldSelector::parse("metadata.name", POD_FIELDS)
        .unwrap_err()
        .to_string();
    assert!(message.contains("\"metadata.name\""), "{message}");
}

#[test]
fn unsupported_field_uses_api_server_wording() {
    let err = FieldSelector::parse("spec.foo=bar", POD_FIELDS).unwrap_err();
    assert_eq!(err, SelectorError::UnsupportedField("spec.foo".into()));
    assert_eq!(err.to_string(), "field label not supported: spec.foo");
    // No trimming: the space is part of the field name.
    assert_eq!(
        FieldSelector::parse("metadata.name =x", POD_FIELDS).unwrap_err(),
        SelectorError::UnsupportedField("metadata.name ".into())
    );
    // Terms are sorted before checking, so the first bad field in sorted
    // order is the one reported.
    assert_eq!(
        FieldSelector::parse("z.z=1,a.a=1", POD_FIELDS).unwrap_err(),
        SelectorError::UnsupportedField("a.a".into())
    );
    // A syntax error anywhere wins over an unsupported field.
    assert!(matches!(
        FieldSelector::parse("a.a=1,zzz", POD_FIELDS).unwrap_err(),
        SelectorError::FieldSyntax { .. }
    ));
    assert!(FieldSelector::parse("metadata.name=x", &[]).is_err());
}

#[test]
fn field_selector_display_and_exact_match() {
    let selector = field_sel("status.phase!=Failed,metadata.name=web");
    assert_eq!(
        selector.to_string(),
        "metadata.name=web,status.phase!=Failed"
    );
    assert_eq!(selector.exact_match("metadata.name"), Some("web"));
    assert_eq!(selector.exact_match("status.phase"), None);
    let r = &selector.requirements()[1];
    assert_eq!(
        (r.field(), r.value(), r.is_negated()),
        ("status.phase", "Failed", true)
    );
}

#[test]
fn error_messages_include_offending_input() {
    let cases: Vec<(SelectorError, &str)> = vec![
        (parse_err("a in (b c)"), "'c'"),
        (parse_err("-bad=x"), "\"-bad\""),
        (parse_err("k=-bad"), "\"-bad\""),
        (
            from_object(
                json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
            )
            .unwrap_err(),
            "\"Gt\"",
        ),
        (
            FieldSelector::parse(r"metadata.name=\q", POD_FIELDS).unwrap_err(),
            r#""\\q""#,
        ),
    ];
    for (err, needle) in cases {
        let message = err.to_string();
        assert!(
            message.contains(needle),
            "{message} should contain {needle}"
        );
    }
}
