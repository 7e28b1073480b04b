# The sciot-mqtt service, as compose.yaml runs it against Mosquitto.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sciot_mqtt ./sciot_mqtt
RUN pip install . && rm -rf /src

# Not root; prepared models are cached in a volume so a restart does not cut them again.
RUN useradd --system --uid 10001 --home-dir /var/lib/sciot --create-home sciot \
    && mkdir -p /var/cache/sciot-mqtt \
    && chown sciot /var/cache/sciot-mqtt
USER sciot
WORKDIR /var/lib/sciot
ENV SCIOT_MODEL_CACHE=/var/cache/sciot-mqtt/models

# Settings come from the environment (compose.yaml); SIGTERM publishes `online: false`.
STOPSIGNAL SIGTERM
CMD ["sciot-mqtt", "up", "--external-broker"]
