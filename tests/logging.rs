//! The log lines on stdout (SPEC §4): exact fields and their order, the time
//! format (UTC, six fractional digits), open/data/close addresses, one close
//! per open, consecutive base-62 ConnIDs across rules starting from the
//! start-up time, and the `data` encoding: every byte value and random binary
//! round-trip exactly, in the canonical form, with no `\u` escapes.

use std::net::{Shutdown, TcpStream};

use crate::util::{
    BASE62_SPACE, Proxy, Rng, assert_bytes_eq, base62_value, check_line, connect, data_between,
    echo_once, echo_roundtrip, echo_server, encode_data, events, expect_closed, free_port,
    line_time_micros, lines_of, now_micros, parse_lines, percent_decode, read_to_end, rule,
    wait_listening,
};

#[test]
fn lines_have_the_spec_fields_in_order() {
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "0", &rule(p, echo.port())]);
    wait_listening(p);

    let mut stream = connect(p);
    let client = stream.local_addr().unwrap().to_string();
    echo_roundtrip(&mut stream, b"hello\n");
    echo_roundtrip(&mut stream, b"world");
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut stream).is_empty());
    let now = now_micros();

    let lines = proxy.stop();
    let values = parse_lines(&lines); // checks fields, order, time format, ConnID
    let target = format!("127.0.0.1:{}", echo.port());
    assert!(lines.len() >= 6, "open, 2 x 2 data, close: {lines:#?}");

    let open = &values[0];
    assert_eq!(open["event"], "open", "first line: {}", lines[0]);
    assert_eq!(open["from"], client.as_str());
    assert_eq!(open["to"], target.as_str());
    assert_eq!(open["listen_port"], p);
    let id = open["ConnID"].as_str().unwrap();
    assert_eq!(
        lines_of(&values, id).len(),
        values.len(),
        "every line has the one ConnID"
    );

    let last = values.last().unwrap();
    assert_eq!(
        last["event"],
        "close",
        "last line: {}",
        lines.last().unwrap()
    );
    assert_eq!(events(&values, "close").len(), 1, "exactly one close");
    assert_eq!(last["from"], client.as_str(), "the client ended first");
    assert_eq!(last["to"], target.as_str());

    for v in &values[1..values.len() - 1] {
        assert!(
            v.get("data").is_some(),
            "only data lines between open and close: {v}"
        );
        let direction = (v["from"].as_str().unwrap(), v["to"].as_str().unwrap());
        assert!(
            direction == (client.as_str(), target.as_str())
                || direction == (target.as_str(), client.as_str()),
            "data line addresses: {v}"
        );
    }
    assert_eq!(data_between(&values, &client, &target), b"hello\nworld");
    assert_eq!(data_between(&values, &target, &client), b"hello\nworld");

    // Times are UTC (close to our clock) and in event order.
    let times: Vec<u64> = values
        .iter()
        .map(|v| line_time_micros(v["time"].as_str().unwrap()))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "times out of order: {lines:#?}"
    );
    let skew = now.abs_diff(times[times.len() - 1]);
    assert!(
        skew < 60_000_000,
        "last line's time is {skew} µs away from now (UTC?)"
    );
}

#[test]
fn conn_ids_are_consecutive_across_rules() {
    let echoes = [echo_server("127.0.0.1"), echo_server("127.0.0.1")];
    let ports = [free_port(), free_port()];
    let (refusing, refused_target) = (free_port(), free_port());
    let started = now_micros();
    let mut proxy = Proxy::start([
        "--flush-millis".to_string(),
        "0".to_string(),
        rule(ports[0], echoes[0].port()),
        rule(refusing, refused_target),
        rule(ports[1], echoes[1].port()),
    ]);
    for port in [ports[0], refusing, ports[1]] {
        wait_listening(port);
    }
    let listening = now_micros();

    // One connection at a time, alternating rules, so the open order is known;
    // a connection to an unreachable target in between takes no ID.
    let mut ids = Vec::new();
    for i in 0..6 {
        let port = ports[i % 2];
        let client = echo_once(port, format!("connection {i}").as_bytes());
        let open = proxy.wait_open(client);
        assert_eq!(open["listen_port"], port);
        ids.push(open["ConnID"].as_str().unwrap().to_string());
        if i == 2 {
            expect_closed(&mut connect(refusing), "client of a refused target");
        }
    }
    let values = parse_lines(&proxy.stop());
    assert_eq!(
        events(&values, "open").len(),
        6,
        "only the reachable connections are logged"
    );

    for pair in ids.windows(2) {
        assert_eq!(
            base62_value(&pair[1]),
            (base62_value(&pair[0]) + 1) % BASE62_SPACE,
            "ConnIDs not consecutive: {ids:?}"
        );
    }
    // The first ID is the start-up time in microseconds, modulo 62^8.
    let (low, high) = (started % BASE62_SPACE, listening % BASE62_SPACE);
    let first = base62_value(&ids[0]);
    if low <= high {
        assert!(
            (low..=high).contains(&first),
            "first ConnID {} = {first} is not the start-up time ({low}..={high} µs mod 62^8)",
            ids[0]
        );
    }
}

/// Every data line's text holds exactly the canonical encoding of its bytes.
fn assert_canonical_data(lines: &[String]) {
    for raw in lines {
        let value = check_line(raw);
        if let Some(data) = value.get("data") {
            let bytes = percent_decode(data.as_str().unwrap());
            let expected = format!("\"data\":\"{}\",\"from\":", encode_data(&bytes));
            assert!(
                raw.contains(&expected),
                "data not encoded as SPEC §4 says: {raw}"
            );
        }
    }
}

#[test]
fn every_byte_value_round_trips_through_the_log() {
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    let mut proxy = Proxy::start(["--flush-millis", "0", &rule(p, echo.port())]);
    wait_listening(p);

    let mut payload: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    payload.extend_from_slice(b"caf\xC3\xA9 100% \"quoted\" back\\slash \\u0041 %41");
    let client = echo_once(p, &payload).to_string();
    let target = format!("127.0.0.1:{}", echo.port());

    let lines = proxy.stop();
    let values = parse_lines(&lines);
    assert_bytes_eq(
        &data_between(&values, &client, &target),
        &payload,
        "logged client bytes",
    );
    assert_bytes_eq(
        &data_between(&values, &target, &client),
        &payload,
        "logged echo bytes",
    );
    assert_canonical_data(&lines);
}

#[test]
fn random_binary_round_trips_through_the_log() {
    let echo = echo_server("127.0.0.1");
    let p = free_port();
    // Default flush interval: SIGINT writes what is buffered.
    let mut proxy = Proxy::start([rule(p, echo.port())]);
    wait_listening(p);

    let mut rng = Rng::new(42);
    let mut stream: TcpStream = connect(p);
    let client = stream.local_addr().unwrap().to_string();
    let mut sent = Vec::new();
    for size in [1, 7, 1000, 32 * 1024, 32 * 1024 + 1, 100_000, 1024 * 1024] {
        let blob = rng.bytes(size);
        echo_roundtrip(&mut stream, &blob);
        sent.extend_from_slice(&blob);
    }
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut stream).is_empty());
    let target = format!("127.0.0.1:{}", echo.port());

    let lines = proxy.stop();
    let values = parse_lines(&lines);
    assert_bytes_eq(
        &data_between(&values, &client, &target),
        &sent,
        "logged client bytes",
    );
    assert_bytes_eq(
        &data_between(&values, &target, &client),
        &sent,
        "logged echo bytes",
    );
    for v in values.iter().filter(|v| v.get("data").is_some()) {
        let len = percent_decode(v["data"].as_str().unwrap()).len();
        assert!(
            (1..=32 * 1024).contains(&len),
            "a data line of {len} bytes (one read is 1..=32 KiB)"
        );
    }
    assert_canonical_data(&lines);
}
