"""WeChat's wire formats against the documented vectors (tests/fixtures/wechat.json, each with
its source) and against wechatpy: its signature check and WeChatCrypto accept the simulator's
pushes, and the connector decrypts what WeChatCrypto encrypts."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from syncd.providers.wechat import wire
from syncd.providers.wechat.sim import WeChatSimulator

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "wechat.json").read_text())
VECTORS = {v["id"]: v for v in FIXTURE["vectors"]}


def test_the_documented_signature_vector_verifies_and_its_negative_does_not():
    vector = VECTORS["wechatpy-check-signature-ok"]
    parts = (vector["inputs"]["token"], vector["inputs"]["timestamp"], vector["inputs"]["nonce"])
    assert wire.signature(*parts) == vector["expected"]["signature"]
    assert wire.signed(vector["expected"]["signature"], *parts)
    assert not wire.signed(vector["negative"]["signature"], *parts)
    assert not wire.signed(None, *parts)


def test_signatures_sort_their_parts():
    vector = VECTORS["wechatpy-signer-sort"]
    assert wire.signature(*vector["inputs"]["data"]) == vector["expected"]["signature"]


@pytest.mark.parametrize("vector_id", ["wxcryptutil-aes-encrypt-1", "wxcryptutil-aes-encrypt-2"])
def test_encryption_with_a_fixed_random_is_byte_exact(vector_id):
    given = VECTORS[vector_id]["inputs"]
    encrypted = wire.encrypt(given["encodingAesKey"], given["appId"], given["msg"].encode(),
                             given["randomStr"].encode())
    assert encrypted == VECTORS[vector_id]["expected"]["encrypt"]
    assert wire.decrypt(given["encodingAesKey"], encrypted) == (given["msg"].encode(), given["appId"])


def test_tencents_sample_verifies_and_decrypts_to_its_message_and_appid():
    vector = VECTORS["tencent-sample-py-decrypt"]
    given = vector["inputs"]
    encrypted = wire.parse_xml(given["from_xml"].encode())["Encrypt"]
    assert wire.signed(given["msg_signature"], given["token"], given["timestamp"], given["nonce"], encrypted)
    message, app_id = wire.decrypt(given["encodingAesKey"], encrypted)
    assert app_id == given["appid"]
    assert message.decode() == vector["recomputed"]["plaintext_RECOMPUTED_NOT_IN_SOURCE"]
    assert wire.parse_xml(message)["MsgId"] == "6054768590064713728"


def test_the_same_aes_scheme_decrypts_wechatpys_wecom_vector():
    given = VECTORS["wechatpy-work-decrypt"]["inputs"]
    message, receiver = wire.decrypt(given["encodingAesKey"], given["Encrypt"])
    assert receiver == given["corp_id"]
    assert wire.parse_xml(message)["Content"] == "test"


@pytest.mark.parametrize("body", [b"not xml", b"<root><a>1</a></root>",
                                  b'<!DOCTYPE x [<!ENTITY a "b">]><xml><a>&a;</a></xml>'])
def test_bodies_that_are_not_wechat_xml_are_refused(body):
    with pytest.raises(wire.WireError):
        wire.parse_xml(body)


def test_ciphertext_that_does_not_decrypt_is_refused():
    key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    with pytest.raises(wire.WireError):
        wire.decrypt(key, "not base64!")
    with pytest.raises(wire.WireError):
        wire.decrypt("A" * 43, wire.encrypt(key, "wx1", b"<xml/>"))
    with pytest.raises(wire.WireError, match="43 letters"):
        wire.aes_key("short")


# -- wechatpy against the simulator ----------------------------------------------------------

def test_wechatpy_checks_the_simulators_signatures():
    sim = WeChatSimulator(mode="plain")
    query = dict(parse_qsl(sim.user_message("oUser", "hello").query))
    check_signature(sim.token, query["signature"], query["timestamp"], query["nonce"])
    check = sim.server_check()
    check_signature(sim.token, check["signature"], check["timestamp"], check["nonce"])
    with pytest.raises(InvalidSignatureException):
        check_signature("another", query["signature"], query["timestamp"], query["nonce"])


@pytest.mark.parametrize("mode", ["safe", "compatible"])
def test_wechatpy_decrypts_the_simulators_encrypted_pushes(mode):
    sim = WeChatSimulator(mode=mode)
    delivery = sim.user_message("oUser", "你好 <b>&")
    query = dict(parse_qsl(delivery.query))
    assert query["encrypt_type"] == "aes"
    crypto = WeChatCrypto(sim.token, sim.encoding_aes_key, sim.app_id)
    plain = crypto.decrypt_message(delivery.body, query["msg_signature"], query["timestamp"], query["nonce"])
    fields = wire.parse_xml(plain.encode() if isinstance(plain, str) else plain)
    assert (fields["Content"], fields["FromUserName"], fields["MsgType"]) == ("你好 <b>&", "oUser", "text")
    assert int(fields["MsgId"]) > 2**53


def test_what_wechatpy_encrypts_the_connectors_wire_decrypts():
    sim = WeChatSimulator()
    crypto = WeChatCrypto(sim.token, sim.encoding_aes_key, sim.app_id)
    reply = crypto.encrypt_message("<xml><Content><![CDATA[hi]]></Content></xml>", "12345", "1700000000")
    fields = wire.parse_xml(reply.encode())
    assert wire.signed(fields["MsgSignature"], sim.token, "1700000000", "12345", fields["Encrypt"])
    message, app_id = wire.decrypt(sim.encoding_aes_key, fields["Encrypt"])
    assert (wire.parse_xml(message)["Content"], app_id) == ("hi", sim.app_id)
