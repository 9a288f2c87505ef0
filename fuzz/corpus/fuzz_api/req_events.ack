
events.ack{"cursor": "app1", "id": 42}