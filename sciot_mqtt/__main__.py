import sys

from sciot_mqtt.cli import main

sys.exit(main())
