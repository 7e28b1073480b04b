"""`python -m sciot_mqtt.network --host H --port P`: measure a link, print JSON."""

from sciot_mqtt.network.measure import main

main()
