package dev.prestop.lab.consumer;

import java.util.LinkedHashMap;
import java.util.Map;

import org.springframework.http.MediaType;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestMapping;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;

/** What the lab driver reads and steers. JSON explicitly: Jackson XML is on the class path. */
@RestController
@RequestMapping(path = "/lab", produces = MediaType.APPLICATION_JSON_VALUE)
public class LabController {

    private final RecordStore records;
    private final LoadDriver driver;
    private final RoutableSampler routable;

    public LabController(RecordStore records, LoadDriver driver, RoutableSampler routable) {
        this.records = records;
        this.driver = driver;
        this.routable = routable;
    }

    /** {"sampledAt": ms, "instances": {"ip:port": ms}}: when each instance was last routable. */
    @GetMapping("/routable")
    public Map<String, Object> routable() {
        return routable.snapshot();
    }

    /** {"next": N, "records": [[seq, start_ms, end_ms, "ip:port", "ok"], ...]}; pass next as after. */
    @GetMapping("/records")
    public RecordStore.Page records(@RequestParam(defaultValue = "0") long after,
                                    @RequestParam(defaultValue = "100000") int limit) {
        return records.after(after, Math.max(1, limit));
    }

    @GetMapping("/stats")
    public Map<String, Object> stats() {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("rate", driver.rate());
        out.put("inFlight", driver.inFlight());
        out.put("queued", driver.queued());
        out.putAll(records.stats());
        return out;
    }

    /** rate=0 stops sending; requests already sent still finish and are recorded. */
    @PostMapping("/load")
    public Map<String, Object> load(@RequestParam double rate) {
        driver.setRate(rate);
        return Map.of("rate", driver.rate());
    }
}
