//! Behaviour of the remoting frame codec: golden bytes from REMOTING.md §8, incremental decoding,
//! every error, the header dialects real clients send, and round-trip properties.

// One module named after the file so that `cargo test -p vostok-core remoting` selects these.
mod remoting {
    use std::collections::BTreeMap;

    use bytes::{BufMut, Bytes, BytesMut};
    use proptest::prelude::*;
    use vostok_core::remoting::{
        encode, try_encode, wire_serialize_type, FrameDecoder, FrameError, RemotingCommand,
        SerializeType, MAX_FRAME_LEN,
    };

    /// The header text of REMOTING.md §8.1.
    const GOLDEN_JSON_HEADER: &str = r#"{"code":105,"extFields":{"topic":"TopicA"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;

    /// The whole frame of REMOTING.md §8.2.
    const GOLDEN_BINARY_FRAME: [u8; 46] = [
        0x00, 0x00, 0x00, 0x2A, 0x01, 0x00, 0x00, 0x26, 0x00, 0x69, 0x00, 0x01, 0xDF, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00,
        0x05, 0x74, 0x6F, 0x70, 0x69, 0x63, 0x00, 0x00, 0x00, 0x06, 0x54, 0x6F, 0x70, 0x69, 0x63,
        0x41,
    ];

    /// GET_ROUTEINFO_BY_TOPIC for TopicA, opaque 1: the command of §8.1 and §8.2.
    fn route_request(serialize_type: SerializeType) -> RemotingCommand {
        let mut cmd = RemotingCommand::request(105).with_ext("topic", "TopicA");
        cmd.opaque = 1;
        cmd.serialize_type = serialize_type;
        cmd
    }

    fn encoded(cmd: &RemotingCommand) -> BytesMut {
        let mut out = BytesMut::new();
        encode(cmd, &mut out);
        out
    }

    /// A frame around arbitrary header bytes.
    fn frame(serialize_type: u8, header: &[u8], body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        out.put_u32((4 + header.len() + body.len()) as u32);
        out.put_u32(u32::from(serialize_type) << 24 | header.len() as u32);
        out.put_slice(header);
        out.put_slice(body);
        out
    }

    /// Decodes a buffer expected to hold exactly one whole frame.
    fn decode_one(mut buf: BytesMut) -> Result<RemotingCommand, FrameError> {
        let cmd = FrameDecoder::default().decode(&mut buf)?;
        assert!(buf.is_empty(), "the frame must be consumed whole");
        Ok(cmd.expect("a whole frame was buffered"))
    }

    fn decode_json(header: &str) -> Result<RemotingCommand, FrameError> {
        decode_one(frame(0, header.as_bytes(), b""))
    }

    fn ext(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // ---- golden bytes -------------------------------------------------------------------------------

    /// Goal: the JSON frame of §8.1, byte for byte, both ways. Method: encode the command and compare
    /// the length words and header text; decode the bytes back.
    #[test]
    fn golden_json_frame() {
        let bytes = encoded(&route_request(SerializeType::Json));
        assert_eq!(&bytes[..8], &[0, 0, 0, 0x84, 0, 0, 0, 0x80]);
        assert_eq!(&bytes[8..], GOLDEN_JSON_HEADER.as_bytes());
        assert_eq!(
            &bytes[..0x18],
            b"\x00\x00\x00\x84\x00\x00\x00\x80{\"code\":105,\"ext"
        );
        assert_eq!(
            decode_one(bytes).unwrap(),
            route_request(SerializeType::Json)
        );
    }

    /// Goal: the binary frame of §8.2, byte for byte, both ways.
    #[test]
    fn golden_binary_frame() {
        let bytes = encoded(&route_request(SerializeType::RocketMq));
        assert_eq!(&bytes[..], &GOLDEN_BINARY_FRAME[..]);
        let cmd = decode_one(BytesMut::from(&GOLDEN_BINARY_FRAME[..])).unwrap();
        assert_eq!(cmd, route_request(SerializeType::RocketMq));
    }

    /// Goal: a body follows the header and is handed out without copying. Method: decode a frame
    /// with a body and check the body points into the original allocation.
    #[test]
    fn body_is_split_off_without_copy() {
        let cmd = route_request(SerializeType::Json).with_body(&b"hello body"[..]);
        let mut buf = encoded(&cmd);
        let body_addr = buf.as_ptr() as usize + buf.len() - 10;
        let decoded = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(decoded.body, Bytes::from_static(b"hello body"));
        assert_eq!(decoded.body.as_ptr() as usize, body_addr);
        assert_eq!(decoded, cmd);
    }

    // ---- incremental decoding -----------------------------------------------------------------------

    /// Goal: a frame trickling in one byte at a time yields exactly one command, at the last byte,
    /// and partial input leaves the buffer untouched. Method: feed both golden frames byte by byte.
    #[test]
    fn byte_at_a_time_yields_one_command() {
        let mut json = encoded(&route_request(SerializeType::Json).with_body(&b"xyz"[..])).to_vec();
        json.extend_from_slice(&GOLDEN_BINARY_FRAME);
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut commands = Vec::new();
        for &byte in &json {
            buf.put_u8(byte);
            let before = buf.clone();
            match decoder.decode(&mut buf).unwrap() {
                Some(cmd) => commands.push(cmd),
                None => assert_eq!(buf, before, "a partial frame must stay in the buffer"),
            }
        }
        assert!(buf.is_empty());
        assert_eq!(
            commands,
            vec![
                route_request(SerializeType::Json).with_body(&b"xyz"[..]),
                route_request(SerializeType::RocketMq)
            ]
        );
    }

    /// Goal: two frames in one read come out one per call, then `None`. Method: concatenate a JSON
    /// and a binary frame plus the start of a third.
    #[test]
    fn two_frames_in_one_buffer() {
        let first = route_request(SerializeType::Json).with_body(&b"one"[..]);
        let mut second = RemotingCommand::response_to(&first, 17, Some("no route".to_owned()));
        second.serialize_type = SerializeType::RocketMq;
        let mut buf = encoded(&first);
        encode(&second, &mut buf);
        buf.put_slice(&[0, 0, 0]);
        let mut decoder = FrameDecoder::default();
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(first));
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(second));
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], &[0, 0, 0]);
    }

    // ---- errors -------------------------------------------------------------------------------------

    /// Goal: an oversized frame is refused as soon as its length word is visible, before its bytes
    /// arrive. Method: only 4 bytes buffered; limits both default and custom.
    #[test]
    fn too_long_is_decided_from_the_length_word() {
        let mut buf = BytesMut::from(&0x7FFF_FFFFu32.to_be_bytes()[..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::TooLong {
                len: 0x8000_0003,
                max: MAX_FRAME_LEN
            })
        );
        assert_eq!(buf.len(), 4, "the buffer is left alone on error");

        // Exactly at the limit is accepted (it waits for more bytes); one byte more is refused.
        let mut at_limit = BytesMut::from(&((MAX_FRAME_LEN - 4) as u32).to_be_bytes()[..]);
        assert_eq!(FrameDecoder::default().decode(&mut at_limit), Ok(None));
        let mut over = BytesMut::from(&((MAX_FRAME_LEN - 3) as u32).to_be_bytes()[..]);
        assert!(matches!(
            FrameDecoder::default().decode(&mut over),
            Err(FrameError::TooLong { .. })
        ));

        let frame = encoded(&route_request(SerializeType::Json));
        let mut small = FrameDecoder::new(frame.len() - 1);
        assert_eq!(
            small.decode(&mut frame.clone()),
            Err(FrameError::TooLong {
                len: frame.len(),
                max: frame.len() - 1
            })
        );
        assert!(FrameDecoder::new(frame.len())
            .decode(&mut frame.clone())
            .unwrap()
            .is_some());
    }

    /// Goal: lengths too small for the header-length word, negative ones included, are errors.
    #[test]
    fn too_short_and_negative_lengths() {
        for (word, expected) in [
            (0i32, 0i64),
            (3, 3),
            (-1, -1),
            (i32::MIN, i64::from(i32::MIN)),
        ] {
            let mut buf = BytesMut::from(&word.to_be_bytes()[..]);
            assert_eq!(
                FrameDecoder::default().decode(&mut buf),
                Err(FrameError::TooShort(expected))
            );
        }
    }

    /// Goal: a header length beyond the frame is refused as soon as the header word is visible.
    #[test]
    fn header_longer_than_frame() {
        let mut buf = BytesMut::new();
        buf.put_u32(4 + 10);
        buf.put_u32(11);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::HeaderTooLong {
                header_len: 11,
                available: 10
            })
        );
        // The 24-bit maximum with the binary type bit: still only the low 24 bits count.
        let mut buf = BytesMut::new();
        buf.put_u32(4 + 100);
        buf.put_u32(0x01FF_FFFF);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::HeaderTooLong {
                header_len: 0xFF_FFFF,
                available: 100
            })
        );
    }

    /// Goal: serialize types other than 0 and 1 are refused (ali-ons-style unmasked words included).
    #[test]
    fn unknown_serialize_type() {
        for serialize_type in [2u8, 0x7F, 0x80, 0xFF] {
            let mut buf = frame(serialize_type, b"{}", b"");
            assert_eq!(
                FrameDecoder::default().decode(&mut buf),
                Err(FrameError::UnknownSerializeType(serialize_type))
            );
        }
    }

    /// Goal: malformed headers of both types are BadHeader, and the buffer is left intact.
    #[test]
    fn bad_headers() {
        let cases: Vec<BytesMut> = vec![
            frame(0, b"", b""),
            frame(0, b"not json", b""),
            frame(0, br#"{"flag":0}"#, b""),
            frame(0, br#"{"code":null}"#, b""),
            frame(0, br#"{"code":2147483648}"#, b""),
            frame(0, br#"{"code":99999999999999999999999}"#, b""),
            frame(0, br#"{"code":1,"opaque":-2147483649}"#, b""),
            frame(0, br#"{"code":1.5}"#, b""),
            frame(0, br#"{"code":true}"#, b""),
            frame(0, br#"{"code":1,"extFields":[1]}"#, b""),
            frame(0, br#"{"code":1,"extFields":"x"}"#, b""),
            frame(0, br#"{"code":1,"language":{}}"#, b""),
            frame(1, b"", b""),
            frame(1, &[0u8; 20], b""),
            frame(
                1,
                &[0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, b'a'],
                b"",
            ),
        ];
        for case in cases {
            let mut buf = case.clone();
            let result = FrameDecoder::default().decode(&mut buf);
            assert!(
                matches!(result, Err(FrameError::BadHeader(_))),
                "{case:?} gave {result:?}"
            );
            assert_eq!(buf, case, "the buffer is left alone on error");
        }
    }

    // ---- tolerant JSON ------------------------------------------------------------------------------

    /// Goal: ali-ons' header (its key order, numbers and booleans as ext values, no remark) decodes
    /// with the values as text.
    #[test]
    fn ali_ons_numbers_and_booleans() {
        let cmd = decode_json(
        r#"{"code":310,"language":"JAVA","opaque":5,"flag":0,"version":121,"extFields":{"a":"PG","queueId":0,"unitMode":false,"queueOffset":1234,"b":true,"neg":-7,"f":1.50,"e":2E+3,"gone":null}}"#,
    )
    .unwrap();
        assert_eq!(cmd.code, 310);
        assert_eq!(cmd.version, 121);
        assert_eq!(cmd.opaque, 5);
        assert_eq!(cmd.remark, None);
        assert_eq!(
            cmd.ext_fields,
            ext(&[
                ("a", "PG"),
                ("queueId", "0"),
                ("unitMode", "false"),
                ("queueOffset", "1234"),
                ("b", "true"),
                ("neg", "-7"),
                ("f", "1.50"),
                ("e", "2E+3"),
            ])
        );
        assert_eq!(cmd.ext_num::<i32>("queueId"), Ok(0));
        assert_eq!(cmd.ext_bool("unitMode"), Some(false));
    }

    /// Goal: Go's header (declaration order, `remark:""`, no serializeTypeCurrentRPC).
    #[test]
    fn go_style_header() {
        let cmd = decode_json(
        r#"{"code":34,"language":"GO","version":317,"opaque":1,"flag":0,"remark":"","extFields":{"k":"v"}}"#,
    )
    .unwrap();
        assert_eq!(cmd.language, "GO");
        assert_eq!(cmd.version, 317);
        assert_eq!(cmd.remark.as_deref(), Some(""));
        assert_eq!(cmd.ext_fields, ext(&[("k", "v")]));
        assert_eq!(cmd.serialize_type, SerializeType::Json);
    }

    /// Goal: the Rust client's header (`remark:null`, `extFields:null`, fixed order).
    #[test]
    fn rust_style_header() {
        let cmd = decode_json(
        r#"{"code":105,"language":"RUST","version":479,"opaque":3,"flag":2,"remark":null,"extFields":null,"serializeTypeCurrentRPC":"JSON"}"#,
    )
    .unwrap();
        assert_eq!(cmd.language, "RUST");
        assert_eq!(cmd.remark, None);
        assert!(cmd.ext_fields.is_empty());
        assert!(cmd.is_oneway());
    }

    /// Goal: key order, whitespace and unknown keys (with any value shape) do not matter; missing
    /// members take Java's defaults; unknown language names are kept.
    #[test]
    fn reordered_whitespace_unknown_keys_and_defaults() {
        let cmd = decode_json(
        " \r\n\t{ \"x\" : { \"y\" : [1, {\"z\": null}, \"s\", true] } ,\n \"extFields\" : { \"t\" : \"A\" } ,\
         \"opaque\":\t-9 , \"code\" : 11 , \"language\" : \"COBOL\" , \"extra\": 3.5e-2 } \n",
    )
    .unwrap();
        assert_eq!(cmd.code, 11);
        assert_eq!(cmd.opaque, -9);
        assert_eq!(cmd.flag, 0);
        assert_eq!(cmd.version, 0);
        assert_eq!(cmd.language, "COBOL");
        assert_eq!(cmd.ext_fields, ext(&[("t", "A")]));

        let minimal = decode_json(r#"{"code":0}"#).unwrap();
        assert_eq!(minimal.language, "JAVA");
        assert_eq!((minimal.flag, minimal.opaque, minimal.version), (0, 0, 0));
        assert_eq!(minimal.remark, None);
    }

    /// Goal: coercions fastjson performs are accepted: integers as strings, `null` integers, a
    /// language given as its byte, structured ext values kept as JSON text.
    #[test]
    fn fastjson_coercions() {
        let cmd = decode_json(
        r#"{"code":"105","flag":null,"opaque":" 4 ","language":9,"extFields":{"o":{"a": 1},"l":[]}}"#,
    )
    .unwrap();
        assert_eq!(cmd.code, 105);
        assert_eq!(cmd.opaque, 4);
        assert_eq!(cmd.language, "GO");
        assert_eq!(cmd.ext_fields, ext(&[("o", r#"{"a": 1}"#), ("l", "[]")]));
        assert_eq!(
            decode_json(r#"{"code":1,"language":99}"#).unwrap().language,
            "OTHER"
        );
    }

    /// Goal: property strings with U+0001/U+0002, escaped or raw, survive decoding and a re-encode.
    #[test]
    fn property_separators_round_trip() {
        let properties = "UNIQ_KEY\u{1}C0A80105109218B4AAC2476E5C000001\u{2}WAIT\u{1}true\u{2}";
        let escaped = r#"{"code":310,"extFields":{"i":"UNIQ_KEY\u0001C0A80105109218B4AAC2476E5C000001\u0002WAIT\u0001true\u0002"}}"#;
        let raw = format!("{{\"code\":310,\"extFields\":{{\"i\":\"{properties}\"}}}}");
        for header in [escaped.to_owned(), raw] {
            let cmd = decode_json(&header).unwrap();
            assert_eq!(cmd.ext("i"), Some(properties));
            let again = decode_one(encoded(&cmd)).unwrap();
            assert_eq!(again, cmd);
        }
    }

    // ---- encoding choices ---------------------------------------------------------------------------

    /// Goal: a command the binary header cannot carry is sent as JSON; everything else keeps its
    /// type. Method: a POP code asked for in ROCKETMQ.
    #[test]
    fn binary_falls_back_to_json() {
        let mut pop = RemotingCommand::request(200_050).with_ext("k", "v");
        pop.serialize_type = SerializeType::RocketMq;
        assert_eq!(wire_serialize_type(&pop), SerializeType::Json);
        let bytes = encoded(&pop);
        assert_eq!(bytes[4], 0, "JSON serialize type");
        let decoded = decode_one(bytes).unwrap();
        assert_eq!(decoded.code, 200_050);
        assert_eq!(decoded.serialize_type, SerializeType::Json);
        assert_eq!(
            wire_serialize_type(&route_request(SerializeType::RocketMq)),
            SerializeType::RocketMq
        );
    }

    /// Goal: a header beyond 24 bits is refused and nothing is written. Method: a 16 MiB remark.
    #[test]
    fn oversized_header_is_not_written() {
        let mut cmd = RemotingCommand::request(1);
        cmd.remark = Some("r".repeat(1 << 24));
        let mut out = BytesMut::from(&b"keep"[..]);
        assert!(try_encode(&cmd, &mut out).is_err());
        encode(&cmd, &mut out);
        assert_eq!(&out[..], b"keep");
    }

    // ---- properties ---------------------------------------------------------------------------------

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_%]{0,12}",
            any::<String>(),
            "[\\x00-\\x1f\"\\\\\u{1}\u{2}a-z]{0,12}",
        ]
    }

    fn arb_command() -> impl Strategy<Value = RemotingCommand> {
        let language = prop_oneof![
            Just("JAVA".to_owned()),
            Just("GO".to_owned()),
            Just("RUST".to_owned()),
            Just("NODE_JS".to_owned()),
            arb_text(),
        ];
        let small_or_any = || prop_oneof![-40_000i32..40_000, any::<i32>()];
        (
            (
                small_or_any(),
                language,
                small_or_any(),
                any::<i32>(),
                any::<i32>(),
            ),
            proptest::option::of(arb_text()),
            proptest::collection::btree_map(arb_text(), arb_text(), 0..6),
            proptest::collection::vec(any::<u8>(), 0..64),
            prop_oneof![Just(SerializeType::Json), Just(SerializeType::RocketMq)],
        )
            .prop_map(
                |(
                    (code, language, version, opaque, flag),
                    remark,
                    ext_fields,
                    body,
                    serialize_type,
                )| {
                    RemotingCommand {
                        code,
                        language,
                        version,
                        opaque,
                        flag,
                        remark,
                        ext_fields,
                        body: Bytes::from(body),
                        serialize_type,
                    }
                },
            )
    }

    proptest! {
        /// Goal: encode then decode gives the command back, in both header types. The only changes
        /// are the documented ones: the header type actually used, and an empty remark reading as
        /// none in the binary header.
        #[test]
        fn encode_decode_round_trip(cmd in arb_command(), split in any::<prop::sample::Index>()) {
            let mut expected = cmd.clone();
            expected.serialize_type = wire_serialize_type(&cmd);
            if expected.serialize_type == SerializeType::RocketMq && expected.remark.as_deref() == Some("") {
                expected.remark = None;
            }
            let bytes = encoded(&cmd);
            // Split delivery: the first part never yields a command unless it is the whole frame.
            let cut = split.index(bytes.len() + 1);
            let mut buf = BytesMut::from(&bytes[..cut]);
            let mut decoder = FrameDecoder::default();
            let first = decoder.decode(&mut buf).unwrap();
            if cut < bytes.len() {
                prop_assert!(first.is_none());
                buf.extend_from_slice(&bytes[cut..]);
                let decoded = decoder.decode(&mut buf).unwrap();
                prop_assert_eq!(decoded, Some(expected));
            } else {
                prop_assert_eq!(first, Some(expected));
            }
            prop_assert!(buf.is_empty());
        }

        /// Goal: arbitrary bytes never panic the decoder, and it always either waits, errs or
        /// consumes exactly one frame.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut decoder = FrameDecoder::new(1024);
            loop {
                let before = buf.len();
                match decoder.decode(&mut buf) {
                    Ok(Some(_)) => prop_assert!(buf.len() < before),
                    Ok(None) | Err(_) => {
                        prop_assert_eq!(buf.len(), before);
                        break;
                    }
                }
            }
        }

        /// Goal: well-framed but arbitrary headers never panic either (the length words are right,
        /// so the header parsers themselves are exercised).
        #[test]
        fn arbitrary_headers_never_panic(
            serialize_type in 0u8..2,
            header in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..128),
                "[{}\\[\\]\":,0-9a-z\\\\ -]{0,64}".prop_map(String::into_bytes),
            ],
        ) {
            let _ = FrameDecoder::default().decode(&mut frame(serialize_type, &header, b"body"));
        }

        /// Goal: corrupting any byte of a valid frame never panics.
        #[test]
        fn corrupted_frames_never_panic(cmd in arb_command(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = encoded(&cmd);
            let index = at.index(bytes.len());
            bytes[index] = byte;
            let _ = FrameDecoder::default().decode(&mut bytes);
        }
    }
}
