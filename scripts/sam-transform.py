#!/usr/bin/env python3
"""Prints infra/template.yaml as CloudFormation deploys it: the SAM transform applied offline with
aws-sam-translator (PyPI), so tests see the roles, policies and mappings SAM generates.

Usage: sam-transform.py TEMPLATE > transformed.json
Managed policies are resolved from a fixed map (offline): their names are kept in the ARNs, so a
test can see which managed policy SAM attached."""
import json
import os
import sys

import yaml
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else "Fn::" + suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_Loader.add_multi_constructor("!", _tag)

MANAGED = {
    name: f"arn:aws:iam::aws:policy/service-role/{name}"
    for name in [
        "AWSLambdaBasicExecutionRole",
        "AWSLambdaSQSQueueExecutionRole",
        "AWSLambdaDynamoDBExecutionRole",
        "AWSXrayWriteOnlyAccess",
        "AWSLambdaVPCAccessExecutionRole",
    ]
}


class _Policies:
    def load(self):
        return MANAGED


def main():
    os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-2")  # offline: any region will do
    with open(sys.argv[1]) as f:
        template = yaml.load(f, Loader=_Loader)
    # What `sam package` does first: local code folders become uploaded S3 objects.
    for name, res in template.get("Resources", {}).items():
        props = res.get("Properties") or {}
        if res.get("Type") == "AWS::Serverless::Function" and not str(props.get("CodeUri", "")).startswith("s3://"):
            props["CodeUri"] = f"s3://packaged-code/{name}.zip"
    try:
        out = transform(template, {}, _Policies())
    except InvalidDocumentException as e:
        sys.exit("SAM transform failed: " + "; ".join(str(c) for c in e.causes))
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    main()
