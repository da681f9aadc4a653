"""The CloudWatch dashboard and alarms, generated from the metric catalogue in :mod:`t2s.metric_names`.

Alarms reach people through an SNS topic encrypted with a customer key whose policy lets CloudWatch use it
(:mod:`infra.cdk.keys`). Per-variant panels (one line per configured variant): online accuracy as ``sum(Correct)/sum(Labeled)``,
p50/p95 latency, requests, and each outcome counter as a rate per 100 requests. Alarms (all to one SNS
topic; the 5xx and p95 alarms also roll a deployment back):
- online accuracy per variant, a ratio of hourly sums, evaluated only when the hour has enough labels
  (otherwise the expression returns no data point and the alarm treats that as not breaching);
- the ALB's target 5xx rate (% of requests) and p95 target response time.
"""

from __future__ import annotations

from typing import Any

from infra.cdk.config import EnvConfig
from t2s.metric_names import NAMESPACE, OUTCOME_METRICS, VARIANT_DIMENSION, metric


def _m(name: str, variant: str, statistic: str, period_s: int) -> Any:
    from aws_cdk import Duration
    from aws_cdk import aws_cloudwatch as cw

    return cw.Metric(namespace=NAMESPACE, metric_name=name, dimensions_map={VARIANT_DIMENSION: variant},
                     statistic=statistic, period=Duration.seconds(period_s), unit=_unit(name))


def _unit(name: str) -> Any:
    from aws_cdk import aws_cloudwatch as cw

    return cw.Unit.MILLISECONDS if metric(name).unit == "Milliseconds" else cw.Unit.COUNT


def accuracy_expression(variant: str, min_labels: int, period_s: int, index: int = 0) -> Any:
    """Online accuracy of ``variant``: a ratio of sums, and no data point while labels < ``min_labels``.

    ``index`` keeps the metric ids unique when several variants share one graph.
    """
    from aws_cdk import Duration
    from aws_cdk import aws_cloudwatch as cw

    c, n = f"correct{index}", f"labeled{index}"
    return cw.MathExpression(
        expression=f"IF({n} >= {min_labels}, {c} / {n})",
        using_metrics={c: _m("Correct", variant, "Sum", period_s), n: _m("Labeled", variant, "Sum", period_s)},
        label=f"accuracy {variant}", period=Duration.seconds(period_s))


def build_observability(stack: Any, cfg: EnvConfig, *, load_balancer: Any, target_group: Any,
                        service: Any) -> dict[str, Any]:
    """Create the SNS topic, the alarms and the dashboard; return the alarms that gate deployments."""
    from aws_cdk import Duration
    from aws_cdk import aws_cloudwatch as cw
    from aws_cdk import aws_cloudwatch_actions as cw_actions
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_sns as sns
    from aws_cdk import aws_sns_subscriptions as subs

    from infra.cdk.keys import alarm_source, alarm_topic_key

    prefix = f"t2s-{cfg.name}"
    # A customer key CloudWatch may use: with the AWS-managed aws/sns key no alarm would ever be delivered.
    topic = sns.Topic(stack, "AlarmTopic", display_name=f"{prefix} alarms", enforce_ssl=True,
                      master_key=alarm_topic_key(stack, "AlarmTopicKey", f"{prefix}-"))
    topic.add_to_resource_policy(iam.PolicyStatement(
        sid="CloudWatchAlarmsPublish", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions=["sns:Publish"], resources=[topic.topic_arn], conditions=alarm_source(f"{prefix}-")))
    if cfg.alarm_email:
        topic.add_subscription(subs.EmailSubscription(cfg.alarm_email))
    action = cw_actions.SnsAction(topic)

    alb_5xx = load_balancer.metrics.http_code_target(
        code=elbv2.HttpCodeTarget.TARGET_5XX_COUNT,
        statistic="Sum", period=Duration.minutes(1))
    alb_requests = load_balancer.metrics.request_count(statistic="Sum", period=Duration.minutes(1))
    error_rate = cw.MathExpression(expression="IF(requests > 0, 100 * errors / requests, 0)",
                                   using_metrics={"errors": alb_5xx, "requests": alb_requests},
                                   label="5xx % of requests", period=Duration.minutes(1))
    p95 = target_group.metrics.target_response_time(statistic="p95", period=Duration.minutes(1))

    alarms: dict[str, cw.Alarm] = {}
    alarms["error_rate"] = cw.Alarm(
        stack, "ErrorRateAlarm", alarm_name=f"{prefix}-5xx-rate", metric=error_rate,
        threshold=cfg.error_rate_max_pct, evaluation_periods=5, datapoints_to_alarm=3,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        alarm_description=f"Target 5xx above {cfg.error_rate_max_pct}% of requests (3 of 5 minutes). "
                          "Runbook: infra/README.md#when-an-alarm-fires")
    alarms["latency_p95"] = cw.Alarm(
        stack, "LatencyAlarm", alarm_name=f"{prefix}-latency-p95", metric=p95,
        threshold=cfg.latency_p95_max_ms / 1000.0, evaluation_periods=5, datapoints_to_alarm=3,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        alarm_description=f"p95 target response time above {cfg.latency_p95_max_ms} ms (3 of 5 minutes). "
                          "Runbook: infra/README.md#when-an-alarm-fires")
    for variant in cfg.variants:
        alarms[f"accuracy_{variant}"] = cw.Alarm(
            stack, f"AccuracyAlarm{variant.title().replace('-', '').replace('_', '')}",
            alarm_name=f"{prefix}-accuracy-{variant}",
            metric=accuracy_expression(variant, cfg.accuracy_min_labels, 3600),
            threshold=cfg.accuracy_min, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=f"Online accuracy of {variant} below {cfg.accuracy_min:.0%} over an hour with "
                              f">= {cfg.accuracy_min_labels} labels. Runbook: infra/README.md#when-an-alarm-fires")
    for alarm in alarms.values():
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)

    dashboard = cw.Dashboard(stack, "Dashboard", dashboard_name=f"{prefix}-serving",
                             default_interval=Duration.hours(6))
    dashboard.add_widgets(*build_widgets(cfg, error_rate=error_rate, p95=p95, service=service))
    return {"topic": topic, "alarms": alarms, "rollback_alarms": [alarms["error_rate"], alarms["latency_p95"]],
            "dashboard": dashboard}


def build_widgets(cfg: EnvConfig, *, error_rate: Any, p95: Any, service: Any) -> list[Any]:
    """Dashboard widgets: every name comes from the catalogue, one line per variant."""
    from aws_cdk import Duration
    from aws_cdk import aws_cloudwatch as cw

    period = 300
    widgets: list[Any] = [
        cw.GraphWidget(title="Online accuracy (sum Correct / sum Labeled)", width=12,
                       left=[accuracy_expression(v, 1, period, i) for i, v in enumerate(cfg.variants)],
                       left_y_axis=cw.YAxisProps(min=0, max=1)),
        cw.GraphWidget(title="Labels per variant", width=12,
                       left=[_m("Labeled", v, "Sum", period) for v in cfg.variants]),
        cw.GraphWidget(title="QueryResponseTime p50 / p95 (ms)", width=12,
                       left=[_m("QueryResponseTime", v, s, period) for v in cfg.variants for s in ("p50", "p95")]),
        cw.GraphWidget(title="Requests per variant", width=12,
                       left=[_m("Requests", v, "Sum", period) for v in cfg.variants]),
    ]
    for name in OUTCOME_METRICS:
        widgets.append(cw.GraphWidget(
            title=f"{name} per 100 requests", width=6,
            left=[cw.MathExpression(expression=f"IF(req{i} > 0, 100 * n{i} / req{i}, 0)", label=v,
                                    using_metrics={f"n{i}": _m(name, v, "Sum", period),
                                                   f"req{i}": _m("Requests", v, "Sum", period)},
                                    period=Duration.seconds(period)) for i, v in enumerate(cfg.variants)]))
    widgets += [
        cw.GraphWidget(title="ALB target 5xx %", width=8, left=[error_rate]),
        cw.GraphWidget(title="ALB target response time p95 (s)", width=8, left=[p95]),
        cw.GraphWidget(title="API tasks CPU / memory %", width=8,
                       left=[service.metric_cpu_utilization(), service.metric_memory_utilization()]),
    ]
    return widgets
