//! `dubbo_writers`' Java encoding checked against the JDK itself: `URLEncoder.encode(s, "UTF-8")` (Dubbo's
//! `URL.encode`) and `String.hashCode()` (the value of Java's persistent keys), run by `java` on
//! `scripts/JavaUrlEncoding.java`. Skipped (with a note) on a machine without `java`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Write;
use std::process::{Command, Stdio};

use mesh_testkit::dubbo_writers::{self as dw, Provider};

#[test]
fn encoder_and_hash_code_match_the_jdk() {
    if Command::new("java").arg("-version").output().is_err() {
        eprintln!("java not installed: JDK comparison skipped");
        return;
    }
    let p = Provider::new("org.apache.dubbo.demo.DemoService", "192.168.1.10", 20880)
        .group("g1,g2")
        .version("1.0.0")
        .tag("gray")
        .token("a b+c")
        .param("sayHello.timeout", "250");
    let mut inputs: Vec<String> = vec![
        String::new(),
        " ".into(),
        "a-z.A_Z*09~!'()".into(),
        "a b/c:d?e=f&g,h;i@j#k$l%m+n".into(),
        "中文字符串 x\u{1F600}y é".into(),
        "/dubbo/org.apache.dubbo.demo.DemoService".into(),
        "/dubbo/org.apache.dubbo.demo.DemoService/configurators".into(),
        "polygenelubricants".into(),
        (0u8..0x7f)
            .filter(|b| !b.is_ascii_control())
            .map(char::from)
            .collect(),
    ];
    for r in [
        dw::java27_provider(dw::DEFAULT_ROOT, &p),
        dw::java33_provider(dw::DEFAULT_ROOT, &p),
        dw::java33_simplified_provider(dw::DEFAULT_ROOT, &p, &[]),
        dw::dubbo_go_provider("dubbo", &p),
    ] {
        inputs.push(r.url);
    }
    let script = format!("{}/scripts/JavaUrlEncoding.java", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("java")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for s in &inputs {
        writeln!(stdin, "{s}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), inputs.len(), "{text}");
    for (s, line) in inputs.iter().zip(lines) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!(dw::java_url_encode(s), fields[0], "URLEncoder.encode({s:?})");
        assert_eq!(
            dw::java_string_hash_code(s).to_string(),
            fields[1],
            "{s:?}.hashCode()"
        );
        assert_eq!(fields[2], "true", "round trip of {s:?}");
    }
}
