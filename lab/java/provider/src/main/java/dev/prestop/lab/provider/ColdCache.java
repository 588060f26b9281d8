package dev.prestop.lab.provider;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.stereotype.Component;

/**
 * A lazily built cache, so the first requests after a start are slow the way a real
 * app's are (caches, JIT, connection pools). The first request builds
 * lab.cold-cache-entries SHA-256 digests into a HashMap; requests that arrive
 * meanwhile wait for it, as they would behind a real lazy initialiser's lock.
 */
@Component
public class ColdCache {

    private static final Logger log = LoggerFactory.getLogger(ColdCache.class);

    private final int entries;
    private volatile Map<String, String> cache;

    public ColdCache(@Value("${lab.cold-cache-entries:0}") int entries) {
        this.entries = entries;
    }

    public void ensureBuilt() {
        if (cache != null) {
            return;
        }
        synchronized (this) {
            if (cache == null) {
                cache = build();
            }
        }
    }

    private Map<String, String> build() {
        long t0 = System.nanoTime();
        Map<String, String> map = new HashMap<>(Math.max(16, entries * 2));
        MessageDigest sha256;
        try {
            sha256 = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        HexFormat hex = HexFormat.of();
        for (int i = 0; i < entries; i++) {
            String key = "entry-" + i;
            map.put(key, hex.formatHex(sha256.digest(key.getBytes(StandardCharsets.UTF_8))));
        }
        if (entries > 0) {
            log.info("cold cache: built {} entries in {} ms", entries, (System.nanoTime() - t0) / 1_000_000);
        }
        return map;
    }
}
