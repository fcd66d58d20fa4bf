//! Message ids: the broker's offset id (store host + physical offset) and the client UNIQ_KEY.
