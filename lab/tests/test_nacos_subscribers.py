"""The emulator's aggregated subscriber lists, in the shapes real 2.3.1 and 3.1.0 answer
(docs/differences.md), and the lab consumers listed there by their management port."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from prestop_lab.consumer import Consumer, ConsumerConfig
from prestop_lab.nacos_emulator import SUBSCRIBER_AGENT, EmulatorConfig, Flavour, NacosEmulator
from prestop_lab.procs import wait_for

V1 = "/nacos/v1/ns/service/subscribers"
V3 = "/nacos/v3/admin/ns/service/subscribers"


@pytest.fixture(name="http")
def fixture_http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def emulator(flavour: Flavour) -> NacosEmulator:
    return NacosEmulator(
        EmulatorConfig(flavour=flavour, auth_enabled=True, users={"nacos": "pw"}, push_delay=0.05)
    )


def token(http: httpx.Client, nacos: NacosEmulator) -> str:
    login = http.post(
        f"{nacos.url}/nacos/v1/auth/users/login", data={"username": "nacos", "password": "pw"}
    )
    return str(login.json()["accessToken"])


def subscribe(
    http: httpx.Client, nacos: NacosEmulator, tok: str, port: int, service: str = "svc"
) -> None:
    """What a lab consumer's list call does: announce its IP and management port."""
    params = {"serviceName": service, "clientIP": "127.0.0.1", "subscriberPort": str(port)}
    answer = http.get(
        f"{nacos.url}/nacos/v1/ns/instance/list", params=params, headers={"accessToken": tok}
    )
    assert answer.status_code == 200


def test_2x_lists_subscribers_with_their_port(http: httpx.Client) -> None:
    with emulator("2.x") as nacos:
        tok = token(http, nacos)
        subscribe(http, nacos, tok, 9101)
        subscribe(http, nacos, tok, 9102)
        params = {
            "serviceName": "DEFAULT_GROUP@@svc",
            "namespaceId": "public",
            "aggregation": "true",
            "pageNo": "1",
            "pageSize": "1000",
        }
        answer = http.get(nacos.url + V1, params={**params, "accessToken": tok})
        assert answer.status_code == 200
        body = answer.json()
        assert body["count"] == 2
        assert body["subscribers"][0] == {
            "addrStr": "127.0.0.1:9101",
            "agent": SUBSCRIBER_AGENT,
            "app": "unknown",
            "ip": "127.0.0.1",
            "port": 9101,
            "namespaceId": "public",
            "serviceName": "DEFAULT_GROUP@@svc",
            "cluster": "",
        }
        # The group may be left out, the token sent as a header or a Bearer.
        bare = {**params, "serviceName": "svc"}
        for headers in ({"accessToken": tok}, {"Authorization": f"Bearer {tok}"}):
            assert http.get(nacos.url + V1, params=bare, headers=headers).json()["count"] == 2
        paged = http.get(nacos.url + V1, params={**params, "pageSize": "1", "accessToken": tok})
        assert [s["port"] for s in paged.json()["subscribers"]] == [9101]
        assert paged.json()["count"] == 2
        other = {**params, "serviceName": "DEFAULT_GROUP@@nosuch", "accessToken": tok}
        assert http.get(nacos.url + V1, params=other).json() == {"subscribers": [], "count": 0}

        refused = http.get(nacos.url + V1, params=params)
        assert refused.status_code == 403
        assert refused.json()["message"] == "user not found!"
        garbage = http.get(nacos.url + V1, params={**params, "accessToken": "garbage"})
        assert garbage.json()["message"] == "token invalid!"
        assert http.get(nacos.url + V1, params={"accessToken": tok}).status_code == 400


def test_3x_lists_subscribers_as_a_page(http: httpx.Client) -> None:
    with emulator("3.x") as nacos:
        tok = token(http, nacos)
        subscribe(http, nacos, tok, 9101)
        subscribe(http, nacos, tok, 9102)
        params = {
            "namespaceId": "public",
            "groupName": "DEFAULT_GROUP",
            "serviceName": "svc",
            "aggregation": "true",
            "pageNo": "1",
            "pageSize": "500",
        }
        answer = http.get(nacos.url + V3, params=params, headers={"accessToken": tok})
        assert answer.status_code == 200
        body = answer.json()
        assert (body["code"], body["message"]) == (0, "success")
        page = body["data"]
        assert (page["totalCount"], page["pageNumber"], page["pagesAvailable"]) == (2, 1, 1)
        assert page["pageItems"][1] == {
            "namespaceId": "public",
            "groupName": "DEFAULT_GROUP",
            "serviceName": "svc",
            "ip": "127.0.0.1",
            "port": 9102,
            "agent": SUBSCRIBER_AGENT,
            "appName": "unknown",
            "address": "127.0.0.1:9102",
        }
        second = http.get(
            nacos.url + V3, params={**params, "pageNo": "2", "pageSize": "1", "accessToken": tok}
        ).json()["data"]
        assert (second["totalCount"], second["pagesAvailable"]) == (2, 2)
        assert [s["port"] for s in second["pageItems"]] == [9102]
        # Real 3.1.0: a grouped name is not split, so it matches no service.
        grouped = {**params, "serviceName": "DEFAULT_GROUP@@svc", "accessToken": tok}
        assert http.get(nacos.url + V3, params=grouped).json()["data"]["totalCount"] == 0

        refused = http.get(nacos.url + V3, params=params)
        assert refused.status_code == 403
        assert "User not found" in refused.json()["message"]
        missing = http.get(nacos.url + V3, params={"accessToken": tok})
        assert (missing.status_code, missing.json()["code"]) == (400, 10000)
        old = http.get(
            nacos.url + V1, params={"serviceName": "DEFAULT_GROUP@@svc", "accessToken": tok}
        )
        assert old.status_code == 410


@pytest.mark.parametrize("flavour", ["2.x", "3.x"])
def test_lab_consumers_are_listed_by_their_management_port(
    http: httpx.Client, flavour: Flavour
) -> None:
    with emulator(flavour) as nacos:
        consumer = Consumer(
            ConsumerConfig(
                nacos_url=nacos.url,
                service="svc",
                api="v3" if flavour == "3.x" else "v1",
                management=True,
                username="nacos",
                password="pw",
                refresh_interval=0.2,
                rate=1,
                duration=30,
            )
        )
        tok = token(http, nacos)
        with consumer:
            if flavour == "2.x":
                url, params = nacos.url + V1, {"serviceName": "svc"}
            else:
                url, params = nacos.url + V3, {"serviceName": "svc", "groupName": "DEFAULT_GROUP"}

            def ports() -> list[int]:
                body = http.get(url, params={**params, "accessToken": tok}).json()
                items = body["subscribers"] if flavour == "2.x" else body["data"]["pageItems"]
                return [int(s["port"]) for s in items]

            assert wait_for(lambda: ports() == [consumer.management_port], 30)


@pytest.mark.parametrize("flavour", ["2.x", "3.x"])
def test_a_nacos_clients_v1_list_call_with_udp_port_subscribes(
    http: httpx.Client, flavour: Flavour
) -> None:
    """As real 2.3.1 and 3.1.0: a UDP-push subscriber needs a udpPort and a Nacos client."""
    with emulator(flavour) as nacos:
        tok = token(http, nacos)
        params = {"serviceName": "svc", "clientIP": "10.1.1.1", "accessToken": tok}
        for extra, agent in (
            ({"udpPort": "9000"}, "python-httpx"),
            ({"udpPort": "0"}, "Nacos-Java-Client:v2.3.1"),
            ({"udpPort": "9001"}, "Nacos-Java-Client:v2.3.1"),
        ):
            http.get(
                f"{nacos.url}/nacos/v1/ns/instance/list",
                params={**params, **extra},
                headers={"User-Agent": agent},
            )
        if flavour == "2.x":
            body = http.get(nacos.url + V1, params=params).json()
            (item,) = body["subscribers"]
            assert (item["addrStr"], item["agent"], item["app"]) == (
                "10.1.1.1:9001",
                "Nacos-Java-Client:v2.3.1",
                "",
            )
        else:
            query = {"serviceName": "svc", "accessToken": tok}
            (item,) = http.get(nacos.url + V3, params=query).json()["data"]["pageItems"]
            assert (item["address"], item["appName"]) == ("10.1.1.1:9001", "")
