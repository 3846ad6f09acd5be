"""A catalogue of secret shapes, each a message as a program might print it and the secret
value in it, for the redaction tests. Key values are made up in the documented formats (AWS,
GitHub, Slack, Stripe, Google docs) and never real."""

from __future__ import annotations

PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAw7Fq9pemSECRETpemBODY0001\n"
       "bm90LWEtcmVhbC1rZXk=\n-----END RSA PRIVATE KEY-----")

# (name, message, the secret it holds)
SHAPES: list[tuple[str, str, str]] = [
    ("env password", "startup failed: DB_PASSWORD=hunter2-LEAK0 rejected", "hunter2-LEAK0"),
    ("env stripe key", "config: STRIPE_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dcLEAK1 loaded",
     "4eC39HqLyjWDarjtT1zdp7dcLEAK1"),
    ("env *_TOKEN", "exported SLACK_BOT_TOKEN=plainvalueLEAK2 to the shell", "plainvalueLEAK2"),
    ("env *_SECRET", "CLIENT_SECRET=abcLEAK3def is invalid", "abcLEAK3def"),
    ("yaml password", "values:\n  password: LEAK4-pass\n  user: admin", "LEAK4-pass"),
    ("json api key", 'body {"api_key": "k-LEAK5-123", "user": "x"}', "k-LEAK5-123"),
    ("redis url", "dial redis://:LEAK6pw@redis.shop:6379/0 refused", "LEAK6pw"),
    ("https url", "GET https://admin:LEAK7pw@registry.example.com/v2/ 401", "LEAK7pw"),
    ("postgres url", "connect postgres://app:LEAK8pw@db:5432/shop failed", "LEAK8pw"),
    ("flag --password X", "exec: app --user admin --password LEAK9pw --verbose", "LEAK9pw"),
    ("flag --token=X", "exec: app --token=LEAK10tok", "LEAK10tok"),
    ("quoted value", 'login password="correct horse LEAK11 staple" refused',
     "horse LEAK11 staple"),
    ("quoted flag", "run --secret 'two LEAK12 words' now", "two LEAK12 words"),
    ("pem private key", f"loaded key {PEM} from file", "MIIEowIBAAKCAQEAw7Fq9pemSECRETpemBODY0001"),
    ("pem cut short", "key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANLEAK13cutshort",
     "MIIEvQIBADANLEAK13cutshort"),
    ("aws access key id", "InvalidAccessKeyId AKIAIOSFODNN7LEAK14X used", "AKIAIOSFODNN7LEAK14X"),
    ("aws secret key", "aws said wJalrXUtnFEMI/K7MDENG/bPxRfiCYLEAK015KEY wrong",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYLEAK015KEY"),
    ("aws secret env", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYLEAK016KEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYLEAK016KEY"),
    ("gcp api key", "maps: AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqLEAK17 denied",
     "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqLEAK17"),
    ("gcp oauth token", "bad credentials ya29.a0AfH6SMBLEAK18xyz_token-123 expired",
     "ya29.a0AfH6SMBLEAK18xyz_token-123"),
    ("gcp service account json", '{"type": "service_account", "private_key_id": "LEAK19abc"}',
     "LEAK19abc"),
    ("azure storage key", "DefaultEndpointsProtocol=https;AccountName=shop;"
     "AccountKey=LEAK20base64key==;EndpointSuffix=core.windows.net", "LEAK20base64key=="),
    ("azure sas signature", "GET https://shop.blob.core.windows.net/c?sv=2022&sig=LEAK21sig%3D 403",
     "LEAK21sig%3D"),
    ("github classic token", "git clone with ghp_LEAK22abcdefghijklmnopqrstuvwxyz0123 failed",
     "ghp_LEAK22abcdefghijklmnopqrstuvwxyz0123"),
    ("github oauth token", "token gho_LEAK23abcdefghijklmnopqrstuvwxyz0123 revoked",
     "gho_LEAK23abcdefghijklmnopqrstuvwxyz0123"),
    ("github fine-grained token", "push: github_pat_11LEAK24abcdefghijklmn_opqrstuvwxyz0123 bad",
     "github_pat_11LEAK24abcdefghijklmn_opqrstuvwxyz0123"),
    ("slack token", "slack: xoxb-123456789012-LEAK25abcdefgh invalid_auth",
     "xoxb-123456789012-LEAK25abcdefgh"),
    ("slack webhook", "post https://hooks.slack.com/services/T000/B000/LEAK26xyz failed",
     "LEAK26xyz"),
    ("jwt", "rejected eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJMRUFLMjcifQ.c2lnLEAK27",
     "eyJzdWIiOiJMRUFLMjcifQ"),
    ("bearer token", "Authorization: Bearer LEAK28opaquetoken123", "LEAK28opaquetoken123"),
    ("basic auth", "Authorization: Basic TEVBSzI5OnB3ZA==", "TEVBSzI5OnB3ZA=="),
    ("secret object data", 'Secret {"kind":"Secret","data":{"tls.key":"TEVBSzMwZGF0YQ=="}}',
     "TEVBSzMwZGF0YQ=="),
    ("service account token", "token from /var/run/secrets: eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9."
     "eyJpc3MiOiJrdWJlcm5ldGVzL0xFQUszMSJ9.sigLEAK31", "eyJpc3MiOiJrdWJlcm5ldGVzL0xFQUszMSJ9"),
    ("docker auth", '{"auths":{"r.example":{"auth":"TEVBSzMyOnB3"}}}', "TEVBSzMyOnB3"),
    ("npm token", "npm ERR! npm_LEAK33abcdefghijklmnopqrstuvwxyz01 invalid",
     "npm_LEAK33abcdefghijklmnopqrstuvwxyz01"),
]
