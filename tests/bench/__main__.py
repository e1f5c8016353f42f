"""``make bench``: the numbers in docs/benchmarks.md. Run on an otherwise idle machine."""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import os

from tests.bench import relay
from tests.bench.shapes import BY_NAME, SHAPES


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--only", choices=["relay", "stats", "api", "dashboard", "tracking", "submission", "memory",
                                           "retention", "e2e", "intake", "receiving", "templates", "scale-out", "insights",
                                           "shaping", "message-build", "startup", "api-asgi"], default=None)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--memory-sends", type=int, default=10_000, help="1 MB sends of the memory section")
    parser.add_argument("--retention-sends", type=int, default=2000, help="real sends of the retention section")
    parser.add_argument("--retention-messages", type=int, default=100_000, help="messages' worth of records it measures")
    parser.add_argument("--e2e-messages", type=int, default=3000, help="sends of the e2e and intake sections")
    parser.add_argument("--e2e-sink", choices=["aiosmtpd", "lean"], default="aiosmtpd")
    parser.add_argument("--e2e-shapes", default=",".join(s.name for s in SHAPES),
                        help="comma-separated workload shapes of tests/bench/shapes.py (default: all)")
    parser.add_argument("--scale-out-messages", type=int, default=3000, help="backlog each relay count drains (Kafka)")
    parser.add_argument("--insights-events", type=int, default=10_000_000, help="events of the insights section")
    parser.add_argument("--receiving-messages", type=int, default=600, help="100 KB messages of the receiving section")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the measured process into DIR/intake.txt and DIR/e2e.txt")
    args = parser.parse_args()
    import uvloop

    uvloop.install()  # as `postline` runs
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    if args.only in (None, "relay"):
        results["relay_dual_dkim"] = asyncio.run(relay.run(args.messages))
        results["relay_dual_dkim_aiosmtpd_sink"] = asyncio.run(relay.run(args.messages, sink_kind="aiosmtpd"))
        results["relay_dual_dkim_stock_dkimpy"] = asyncio.run(relay.run(max(300, args.messages // 10), stock=True))
    if args.only in (None, "stats"):
        from tests.bench import stats

        results["stats_1m_events"] = asyncio.run(stats.run())
    if args.only in (None, "insights"):
        from tests.bench import insights

        results["insights_10m_events"] = asyncio.run(insights.run(args.insights_events))
    if args.only in (None, "submission"):
        from tests.bench import submission

        results["smtp_submission"] = submission.run()
    if args.only in (None, "api"):
        from tests.bench import api

        results["api_send"] = api.run()
    if args.only in (None, "dashboard"):
        from tests.bench import dashboard

        results["dashboard_100k_messages"] = asyncio.run(dashboard.run())
    if args.only in (None, "tracking"):
        from tests.bench import tracking

        results["tracking"] = tracking.run()
        results["tracking_api_role_alone"] = tracking.run(role="api")
    if args.only in (None, "memory"):
        from tests.bench import memory

        results["memory_1mb_sends"] = memory.run(args.memory_sends)
    if args.only in (None, "retention"):
        from tests.bench import retention

        results["log_retention_5kb_html"] = retention.run(args.retention_sends, args.retention_messages)
    if args.only in (None, "e2e"):
        from tests.bench import e2e

        shapes = [BY_NAME[name] for name in args.e2e_shapes.split(",")]
        results["e2e_vs_postfix"] = e2e.run(args.e2e_messages, args.e2e_sink, args.profile, shapes)
    if args.only in (None, "intake"):
        from tests.bench import e2e

        results["api_intake_alone"] = e2e.run_intake(args.e2e_messages, args.profile)
        results["api_intake_alone_seed_fields"] = e2e.run_intake(args.e2e_messages, args.profile,
                                                                 BY_NAME["seed_message_4kb_one_line"])
    if args.only in (None, "receiving"):
        from tests.bench import receiving

        results["receiving_100kb"] = receiving.run(args.receiving_messages)
    if args.only in (None, "templates"):
        from tests.bench import templates

        results["intake_template_vs_plain"] = templates.run(args.e2e_messages)
    if args.only in (None, "shaping"):
        from tests.bench import shaping

        results["shaping_5_providers"] = shaping.run()
    if args.only in (None, "message-build"):
        from tests.bench import message_build

        results["message_build_per_shape"] = message_build.run()
    if args.only in (None, "api-asgi"):
        from tests.bench import api_asgi

        results["api_send_in_process"] = api_asgi.run()
    if args.only in (None, "startup"):
        from tests.bench import startup

        results["startup"] = startup.run()
    if args.only in (None, "scale-out"):
        from tests.bench import scale_out

        results["relay_scale_out_kafka"] = scale_out.run(args.scale_out_messages)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
