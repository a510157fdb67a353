//! The README's examples, compiled and tested as an author's crate would be; a test keeps the README's text equal to these files.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod team_label {
    include!("readme/team_label.rs");
}

mod memory_cap {
    include!("readme/memory_cap.rs");
}

mod no_colour {
    include!("readme/no_colour.rs");
}

mod pod_owner {
    include!("readme/pod_owner.rs");
}

/// The ```` ```rust ```` blocks of the README, in order.
fn rust_blocks(readme: &str) -> Vec<&str> {
    readme
        .split("```rust\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .collect()
}

#[test]
fn the_readme_shows_exactly_the_examples_that_are_tested_here() {
    let readme = include_str!("../README.md");
    let blocks = rust_blocks(readme);
    let files = [
        (
            "tests/readme/team_label.rs",
            include_str!("readme/team_label.rs"),
        ),
        (
            "tests/readme/pod_owner.rs",
            include_str!("readme/pod_owner.rs"),
        ),
        (
            "tests/readme/memory_cap.rs",
            include_str!("readme/memory_cap.rs"),
        ),
        (
            "tests/readme/no_colour.rs",
            include_str!("readme/no_colour.rs"),
        ),
    ];
    assert_eq!(
        blocks.len(),
        files.len(),
        "a README example without a tested copy here"
    );
    for ((path, file), block) in files.iter().zip(&blocks) {
        assert!(
            block == file,
            "the README's example differs from {path}; copy one over the other:\n{block}"
        );
    }
}
